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

farm::StatusOr<std::vector<std::string>> SplitCommand(
    std::string_view command) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  size_t i = 0;
  auto unterminated = [&](char quote) {
    return farm::Status::Invalid(std::string("unterminated ") + quote +
                                 " in command \"" + std::string(command) +
                                 "\"");
  };
  while (i < command.size()) {
    char c = command[i];
    if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      ++i;
      continue;
    }
    in_word = true;
    if (c == '\'') {
      size_t close = command.find('\'', i + 1);
      if (close == std::string_view::npos) return unterminated('\'');
      word.append(command.substr(i + 1, close - i - 1));
      i = close + 1;
    } else if (c == '"') {
      ++i;
      while (i < command.size() && command[i] != '"') {
        if (command[i] == '\\' && i + 1 < command.size() &&
            (command[i + 1] == '"' || command[i + 1] == '\\')) {
          ++i;
        }
        word.push_back(command[i++]);
      }
      if (i >= command.size()) return unterminated('"');
      ++i;
    } else if (c == '\\' && i + 1 < command.size()) {
      word.push_back(command[i + 1]);
      i += 2;
    } else {
      word.push_back(c);
      ++i;
    }
  }
  if (in_word) words.push_back(std::move(word));
  if (words.empty()) {
    return farm::Status::Invalid("empty command");
  }
  return words;
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
