// template.cc: ${name} expansion and address helpers for the local and pipe
// transports.
#include "transport/template.h"

namespace transport {

farm::StatusOr<std::string> ExpandTemplate(std::string_view tmpl,
                                           const TemplateVars& vars) {
  std::string out;
  out.reserve(tmpl.size() + 32);
  size_t i = 0;
  while (i < tmpl.size()) {
    size_t dollar = tmpl.find('$', i);
    if (dollar == std::string_view::npos) {
      out.append(tmpl.substr(i));
      break;
    }
    out.append(tmpl.substr(i, dollar - i));
    if (dollar + 1 < tmpl.size() && tmpl[dollar + 1] == '$') {
      out.push_back('$');
      i = dollar + 2;
      continue;
    }
    if (dollar + 1 >= tmpl.size() || tmpl[dollar + 1] != '{') {
      out.push_back('$');
      i = dollar + 1;
      continue;
    }
    size_t close = tmpl.find('}', dollar + 2);
    if (close == std::string_view::npos) {
      return farm::Status::Invalid("unterminated \"${\" in template \"" +
                                   std::string(tmpl) + "\"");
    }
    std::string_view name = tmpl.substr(dollar + 2, close - dollar - 2);
    auto it = vars.find(name);
    if (it == vars.end()) {
      return farm::Status::Invalid("unknown variable ${" + std::string(name) +
                                   "} in template \"" + std::string(tmpl) +
                                   "\"");
    }
    out.append(it->second);
    i = close + 1;
  }
  return out;
}

bool TemplateUses(std::string_view tmpl, std::string_view name) {
  std::string needle = "${" + std::string(name) + "}";
  return tmpl.find(needle) != std::string_view::npos;
}

AddressParts SplitAddress(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return {std::string(address), ""};
  return {std::string(address.substr(0, at)),
          std::string(address.substr(at + 1))};
}

bool SafePathComponent(std::string_view component) {
  if (component.empty() || component == "." || component == "..") return false;
  for (unsigned char c : component) {
    if (c == '/' || c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace transport
