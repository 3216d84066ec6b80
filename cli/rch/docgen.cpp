// rch __man, __completion, __complete: the man pages and completion scripts
// made from the CLI11 tree of main.cpp and from config.toml's key table.
#include "cli/rch/docgen.hpp"

#include <cctype>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "core/config/config.hpp"
#include "core/config/paths.hpp"
#include "core/config/workers.hpp"
#include "core/version/build_info.hpp"

namespace rch::cli {
namespace {

// ---- the tree ----------------------------------------------------------------

// What a value of an option or positional is, for completion.
enum class ValueKind { none, text, workers, files, dirs, choices };

struct Arg {
  std::string name;                        // "--worker", "-v, --verbose", "FILE"
  std::vector<std::string> flags;          // "-v", "--verbose"; empty for a positional
  std::string metavar;                     // "INT", "TEXT:{stable,beta,nightly}"; empty for a flag
  std::string description, default_value;  // default as CLI11 captured it
  bool required = false, many = false;
  ValueKind kind = ValueKind::none;
  std::vector<std::string> choices;
};

struct Command {
  std::vector<std::string> path;  // {"rch", "fleet", "deploy"}
  std::string description;
  std::vector<Arg> options, positionals;
  std::vector<const Arg*> inherited;  // global options that fall through to here
  std::vector<Command> subcommands;
  bool runs = true;  // false when a subcommand is required (rch fleet)
};

std::string join(const std::vector<std::string>& words, const std::string& sep) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : sep) + w;
  return out;
}

// "TEXT:{stable,beta,nightly}" -> its members.
std::vector<std::string> choices_of(const std::string& type) {
  const auto open = type.find('{'), close = type.rfind('}');
  if (open == std::string::npos || close == std::string::npos || close < open) return {};
  std::vector<std::string> out;
  std::stringstream in(type.substr(open + 1, close - open - 1));
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

// Which values complete as what: by name, since CLI11 keeps no such tag.
ValueKind kind_of(const CLI::Option& o, const std::vector<std::string>& choices) {
  static const std::map<std::string, ValueKind> by_name{
      {"--worker", ValueKind::workers}, {"--exclude", ValueKind::workers}, {"--script-dir", ValueKind::dirs},
      {"--log-file", ValueKind::files}, {"--audit-log", ValueKind::files}, {"FILE", ValueKind::files},
      {"SRC", ValueKind::files},
  };
  const std::string name =
      o.nonpositional() ? o.get_lnames().empty() ? "" : "--" + o.get_lnames().front() : o.get_name(true);
  if (auto it = by_name.find(name); it != by_name.end()) return it->second;
  if (!choices.empty()) return ValueKind::choices;
  return o.get_expected_max() == 0 ? ValueKind::none : ValueKind::text;
}

Arg arg_of(const CLI::Option& o) {
  Arg a;
  const bool flag = o.get_expected_max() == 0;
  for (const auto& s : o.get_snames()) a.flags.push_back("-" + s);
  for (const auto& l : o.get_lnames()) a.flags.push_back("--" + l);
  a.name = o.nonpositional() ? join(a.flags, ", ") : o.get_name(true);
  if (!flag && o.nonpositional()) a.metavar = o.get_type_name();
  a.description = o.get_description();
  a.default_value = o.get_default_str();
  a.required = o.get_required();
  a.many = o.get_items_expected_max() > 1;
  a.choices = choices_of(o.get_type_name());
  a.kind = kind_of(o, a.choices);
  return a;
}

bool shown(const CLI::App* a) { return !a->get_group().empty(); }

// `inherited`: the options of the commands above that reach this one.
Command walk(const CLI::App& app, std::vector<std::string> path, std::vector<const Arg*> inherited) {
  Command c;
  c.path = std::move(path);
  c.description = app.get_description();
  c.inherited = std::move(inherited);
  c.runs = app.get_require_subcommand_min() == 0;
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_group().empty()) continue;
    (o->nonpositional() ? c.options : c.positionals).push_back(arg_of(*o));
  }
  // Options a subcommand does not know go up to its parent (CLI11 fallthrough);
  // its own --help and --version do not.
  std::vector<const Arg*> passed = c.inherited;
  for (const Arg& a : c.options) {
    if (a.flags.front() != "-h" && a.flags.front() != "--version") passed.push_back(&a);
  }
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App* a) { return shown(a); })) {
    auto p = c.path;
    p.push_back(sub->get_name());
    c.subcommands.push_back(walk(*sub, std::move(p), sub->get_fallthrough() ? passed : std::vector<const Arg*>{}));
  }
  return c;
}

void each_command(const Command& c, const std::function<void(const Command&)>& f) {
  f(c);
  for (const auto& s : c.subcommands) each_command(s, f);
}

// ---- man pages -------------------------------------------------------------------

// One line of text for troff: backslashes and minus signs escaped.
std::string roff_inline(const std::string& text) {
  std::string out;
  for (char ch : text) {
    if (ch == '\\') {
      out += "\\e";
    } else if (ch == '-') {
      out += "\\-";
    } else {
      out += ch;
    }
  }
  return out;
}

// Running text: escaped, and no line may start with a control character.
std::string roff(const std::string& text) {
  std::string result;
  std::stringstream in(roff_inline(text));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && (line[0] == '.' || line[0] == '\'')) line = "\\&" + line;
    result += line + "\n";
  }
  return result;
}

std::string bold(const std::string& s) { return "\\fB" + roff_inline(s) + "\\fR"; }
std::string italic(const std::string& s) { return "\\fI" + roff_inline(s) + "\\fR"; }

std::string header(const std::string& name, int section) {
  std::string upper;
  for (char ch : name) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return ".TH " + upper + " " + std::to_string(section) + " \"\" \"rch " + build_version() + "\" \"rch manual\"\n";
}

// .TP entries for options or positionals.
void man_args(std::ostream& out, const std::vector<Arg>& args) {
  for (const auto& a : args) {
    out << ".TP\n";
    std::string head;
    if (a.flags.empty()) {
      head = italic(a.name) + (a.many ? "..." : "");
    } else {
      for (const auto& f : a.flags) head += (head.empty() ? "" : ", ") + bold(f);
      if (!a.metavar.empty()) head += " " + italic(a.metavar);
    }
    out << head << "\n" << roff(a.description);
    if (!a.default_value.empty()) out << "(default: " << roff_inline(a.default_value) << ")\n";
  }
}

std::string synopsis(const Command& c) {
  std::string s = bold(join(c.path, " "));
  if (!c.options.empty()) s += " [" + italic("OPTIONS") + "]";
  if (!c.subcommands.empty()) s += c.runs ? " [" + italic("COMMAND") + "]" : " " + italic("COMMAND");
  for (const auto& p : c.positionals) {
    const std::string word = italic(p.name) + (p.many ? "..." : "");
    s += p.required ? " " + word : " [" + word + "]";
  }
  return s;
}

constexpr const char* k_environment = R"(.TP
.B RCH_CONFIG_DIR
config.toml, workers.toml, hooks/ and strategies/ (default $XDG_CONFIG_HOME/rch, else ~/.config/rch).
.TP
.B RCH_STATE_DIR
deployments, history.jsonl, audit.jsonl (default $XDG_STATE_HOME/rch, else ~/.local/state/rch).
.TP
.B RCH_HOME
the installation rch update manages, and rchd's socket (default ~/.rch).
.TP
.B RCH_CACHE_DIR
downloaded releases (default $XDG_CACHE_HOME/rch, else ~/.cache/rch).
.TP
.B RCH_DATA_DIR
update.lock and fleet.lock (default $XDG_DATA_HOME/rch, else ~/.local/share/rch).
.TP
.B RCH_LOG_LEVEL
trace, debug, info, warn, error or off.
.TP
.B RCH_RELEASE_URL
the releases list rch update reads, instead of config.toml's [update] url.
.TP
.B NO_COLOR
no colour in the output.
)";

void man_rch(std::ostream& out, const Command& root) {
  out << header("rch", 1) << ".SH NAME\n";
  std::string summary = root.description;
  if (summary.rfind("rch: ", 0) == 0) summary = summary.substr(5);
  out << "rch \\- " << roff_inline(summary) << "\n";
  out << ".SH SYNOPSIS\n";
  each_command(root, [&](const Command& c) {
    if (c.runs && c.path.size() > 1) out << synopsis(c) << "\n.br\n";
  });
  out << ".SH DESCRIPTION\n"
      << roff(
             "rch deploys the worker agent rch-wkr to a fleet of SSH hosts (workers.toml), "
             "keeps it running the version you choose, and updates itself from signed releases. "
             "Each command's --help prints the options listed here, from the same definitions. "
             "Global options go before or after the command.");
  out << ".SH GLOBAL OPTIONS\n";
  man_args(out, root.options);
  out << ".SH COMMANDS\n";
  each_command(root, [&](const Command& c) {
    if (c.path.size() == 1) return;
    out << ".SS \"" << roff_inline(join(c.path, " ")) << "\"\n" << synopsis(c) << "\n.PP\n" << roff(c.description);
    if (!c.subcommands.empty()) {
      std::vector<std::string> names;
      for (const auto& s : c.subcommands) names.push_back(s.path.back());
      out << ".PP\nCommands: " << roff_inline(join(names, ", ")) << ".\n";
    }
    man_args(out, c.positionals);
    std::vector<Arg> own;
    for (const auto& a : c.options) {
      if (a.flags.front() != "-h") own.push_back(a);
    }
    man_args(out, own);
  });
  out << ".SH EXIT STATUS\n"
      << ".TP\n.B 0\nsuccess.\n.TP\n.B 1\nthe operation failed (the message names the worker, file or step).\n"
      << ".TP\n.B 2\nusage or configuration error.\n";
  out << ".SH ENVIRONMENT\n" << k_environment;
  out << ".SH FILES\n.TP\n.I ~/.config/rch/workers.toml\nthe fleet, see\n.BR rch\\-config (5).\n"
      << ".TP\n.I ~/.config/rch/config.toml\nsettings, see\n.BR rch\\-config (5).\n"
      << ".TP\n.I ~/.rch/\nversions/, current and bin/ of the copy rch update installs; rchd.sock.\n";
  out << ".SH SEE ALSO\n.BR rchd (8),\n.BR rch\\-wkr (1),\n.BR rch\\-config (5)\n";
}

// What each config.toml key does. Every key of the parser's table must be
// here and nothing else (the build fails otherwise), so the page lists
// exactly what config.toml accepts.
const std::map<std::string, std::string>& key_meanings() {
  static const std::map<std::string, std::string> m{
      {"defaults.parallel", "Workers deployed, rolled back or run on at once (--parallel)."},
      {"defaults.probe_parallel",
       "Workers probed at once by work that changes nothing: fleet status, verify, the dry run, and the "
       "preflight of a deploy, which decides whether a worker needs a change (at least --parallel)."},
      {"defaults.connect_timeout", "Seconds to connect and authenticate to a worker."},
      {"defaults.command_timeout", "Seconds a remote command may run (exec --timeout)."},
      {"defaults.host_key_policy",
       "strict: unknown hosts are refused; accept-new: they are added to known_hosts. A changed key is always "
       "refused."},
      {"defaults.known_hosts", "The known_hosts file rch reads and adds to."},
      {"defaults.ssh_config", "The OpenSSH client configuration to read (a path named here must exist)."},
      {"defaults.max_output_bytes",
       "Bytes kept of each remote command's stdout and of its stderr; the rest is "
       "read and dropped."},
      {"defaults.min_transfer_mbps",
       "An upload may take command_timeout plus the artifact's size at this rate (Mbit/s)."},
      {"defaults.stall_timeout", "Seconds an upload may make no progress before it fails as stalled."},
      {"defaults.connect_retries", "More attempts after a transient connect failure (refused, reset, timeout)."},
      {"defaults.connect_retry_delay", "Seconds before the first retry, doubling for each next one."},
      {"preflight.min_disk_mb", "Free MB a worker needs under its root."},
      {"preflight.rsync", "Whether a worker must have rsync: required, optional (a warning) or ignore."},
      {"preflight.zstd", "Whether a worker must have zstd."},
      {"preflight.rustup", "Whether a worker must have rustup (the toolchain step needs it)."},
      {"toolchain.rust", "The rustup toolchain every worker must have."},
      {"toolchain.update", "Also rustup update an installed toolchain (needs network)."},
      {"deploy.keep_versions", "versions/ kept on each worker (current and previous always)."},
      {"deploy.compress", "auto: zstd-compressed uploads to workers with zstd, when the artifact compresses; never."},
      {"deploy.delta", "auto: zstd patches against the agent a worker runs, when the controller holds it; never."},
      {"deploy.source", "push: the controller uploads rch-wkr; pull: each worker fetches the release tarball itself."},
      {"canary.percent", "Percent of the workers deployed first by the canary strategy."},
      {"canary.wait", "Seconds to wait after the canaries before the health check."},
      {"canary.interval", "Seconds between canary_health checks during the wait; 0: one check, at its end."},
      {"update.url", "The releases list rch update reads (GitHub releases API or releases.json)."},
      {"update.channel", "The channel rch update follows: stable, beta or nightly."},
      {"update.minisign_pubkey", "When set, every release must be signed by this key."},
      {"update.ca_file", "An additional CA for the release server."},
      {"update.keep", "Installed versions kept under $RCH_HOME/versions as backups."},
      {"update.connect_timeout", "Seconds to connect to the release server."},
      {"update.transfer_timeout", "Seconds a download may take."},
      {"audit.syslog", "Also send the audit chain's head to syslog."},
      {"audit.syslog_socket", "The syslog socket."},
      {"audit.rotate_mb", "audit.jsonl and history.jsonl rotate at this size."},
      {"audit.keep_files", "Rotated files kept (.1 ... .N)."},
      {"state.keep_deployments", "deployments/<id>/ directories kept."},
      {"http.timeout", "Seconds an rch.http request of a hook or script may take when the call gives none."},
      {"http.max_body_mb", "A longer rch.http response body is an error."},
  };
  return m;
}

int man_config(std::ostream& out) {
  const auto keys = config_key_docs();
  const auto& meanings = key_meanings();
  std::set<std::string> listed;
  for (const auto& k : keys) {
    const std::string name = k.section + "." + k.key;
    if (!meanings.contains(name)) {
      std::cerr << "rch __man rch-config: config.toml key " << name << " has no meaning in cli/rch/docgen.cpp\n";
      return 1;
    }
    listed.insert(name);
  }
  for (const auto& [name, text] : meanings) {
    if (!listed.contains(name)) {
      std::cerr << "rch __man rch-config: cli/rch/docgen.cpp describes " << name
                << ", which config.toml does not accept\n";
      return 1;
    }
  }
  out << header("rch-config", 5) << ".SH NAME\nrch\\-config \\- rch's configuration: config.toml and workers.toml\n"
      << ".SH SYNOPSIS\n.I $RCH_CONFIG_DIR/config.toml\n.br\n.I $RCH_CONFIG_DIR/workers.toml\n"
      << ".SH DESCRIPTION\n"
      << roff(
             "Both files are TOML, in $RCH_CONFIG_DIR (default $XDG_CONFIG_HOME/rch, else ~/.config/rch). "
             "Every key of config.toml is optional; a missing file means the defaults. A flag overrides an "
             "environment variable, which overrides config.toml, which overrides the built-in default. "
             "Errors name file:line:col, and an unknown key suggests the nearest known one. "
             "rch config check prints every effective setting and where it came from.");
  out << ".SH CONFIG.TOML\n";
  std::string section;
  for (const auto& k : keys) {
    if (k.section != section) {
      section = k.section;
      out << ".SS [" << roff_inline(section) << "]\n";
    }
    out << ".TP\n"
        << bold(k.key) << " = " << roff_inline(k.default_value) << "\n"
        << roff(meanings.at(k.section + "." + k.key)) << ".br\nType: " << roff_inline(k.type) << ".\n";
  }
  out << ".SS [policy]\n"
      << roff(
             "Free-form: any keys and values, for site hooks and canary policies, which read them as "
             "ctx.settings.policy (thresholds, URLs) instead of having them edited into the Lua.");
  out << ".SH WORKERS.TOML\n"
      << roff("One [[workers]] table per SSH host:") << ".TP\n.B id\n"
      << roff("The worker's name: letters, digits, '.', '_' and '-', unique.") << ".TP\n.B host\n"
      << roff("Address or a Host alias of the ssh config.") << ".TP\n.B user\n"
      << roff("Login (default: the ssh config, else the local user).") << ".TP\n.B port\n"
      << roff("SSH port (default 22).") << ".TP\n.B identity_file\n"
      << roff("Private key (default: ssh-agent, then the default keys).") << ".TP\n.B certificate_file\n"
      << roff("Its OpenSSH certificate (default: CertificateFile, else <identity>-cert.pub).") << ".TP\n.B root\n"
      << roff("Remote install root, ~ resolved on the worker (default ~/.rch).") << ".TP\n.B tags\n"
      << roff("Array of names; --worker @TAG selects the workers carrying TAG.");
  out << ".SH EXAMPLE\n.nf\n"
      << roff("[[workers]]\nid = \"build-01\"\nhost = \"10.0.0.11\"\nuser = \"rch\"\ntags = [\"gpu\"]")
      << ".fi\n.SH SEE ALSO\n.BR rch (1),\n.BR rchd (8)\n";
  return 0;
}

// ---- completion --------------------------------------------------------------------

std::string kind_word(const Arg& a) {
  switch (a.kind) {
    case ValueKind::workers:
      return "workers";
    case ValueKind::files:
      return "files";
    case ValueKind::dirs:
      return "dirs";
    case ValueKind::choices:
      return "choices:" + join(a.choices, " ");
    case ValueKind::text:
      return "text";
    case ValueKind::none:
      break;
  }
  return "";
}

// The tables both scripts read: per command path, its subcommands, its
// options (inherited global ones too), what each value-taking option takes,
// and what its positional arguments are.
struct Tables {
  std::vector<std::pair<std::string, std::string>> subs, opts, values, args;
};

Tables tables_of(const Command& root) {
  Tables t;
  each_command(root, [&](const Command& c) {
    const std::string path = join(c.path, " ");
    std::vector<std::string> names;
    for (const auto& s : c.subcommands) names.push_back(s.path.back());
    if (!names.empty()) t.subs.emplace_back(path, join(names, " "));
    std::vector<const Arg*> all;
    for (const auto& a : c.options) all.push_back(&a);
    for (const Arg* a : c.inherited) all.push_back(a);
    std::vector<std::string> flags;
    for (const Arg* a : all) {
      for (const auto& f : a->flags) {
        flags.push_back(f);
        if (a->kind != ValueKind::none) t.values.emplace_back(path + " " + f, kind_word(*a));
      }
    }
    t.opts.emplace_back(path, join(flags, " "));
    for (const auto& p : c.positionals) {
      if (p.kind == ValueKind::files) {
        t.args.emplace_back(path, "files");
        break;
      }
    }
  });
  return t;
}

void assoc(std::ostream& out, const char* name, const std::vector<std::pair<std::string, std::string>>& rows,
           bool zsh) {
  out << "  " << name << "=(\n";
  for (const auto& [k, v] : rows) {
    if (zsh) {
      out << "    '" << k << "' '" << v << "'\n";
    } else {
      out << "    ['" << k << "']='" << v << "'\n";
    }
  }
  out << "  )\n";
}

// The four lookup tables both completion scripts start with.
void assoc_tables(std::ostream& out, const Tables& t, bool zsh) {
  assoc(out, "subs", t.subs, zsh);
  assoc(out, "opts", t.opts, zsh);
  assoc(out, "values", t.values, zsh);
  assoc(out, "args", t.args, zsh);
}

void completion_bash(std::ostream& out, const Command& root) {
  const Tables t = tables_of(root);
  out << "# bash completion for rch, made by `rch __completion bash` from rch's own command definitions.\n"
         "_rch() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
         "  local -A subs opts values args\n";
  assoc_tables(out, t, false);
  out << R"bash(  # The command path so far; an option's value is not a command.
  local cmd=rch i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    [[ $w == -- ]] && return 0
    if [[ -n ${values["$cmd $w"]+x} ]]; then
      ((i++))
      continue
    fi
    [[ $w == -* ]] && continue
    [[ " ${subs[$cmd]} " == *" $w "* ]] && cmd="$cmd $w"
  done
  local kind=${values["$cmd $prev"]-}
  COMPREPLY=()
  case $kind in
    workers)
      # A comma list: complete its last item.
      local head="" tail=$cur
      if [[ $cur == *,* ]]; then head="${cur%,*},"; tail=${cur##*,}; fi
      local names
      names=$("${COMP_WORDS[0]}" __complete workers 2>/dev/null)
      mapfile -t COMPREPLY < <(compgen -P "$head" -W "$names" -- "$tail")
      ;;
    files) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
    dirs) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    choices:*) mapfile -t COMPREPLY < <(compgen -W "${kind#choices:}" -- "$cur") ;;
    text) ;;
    *)
      if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${opts[$cmd]}" -- "$cur")
      elif [[ -n ${subs[$cmd]-} ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${subs[$cmd]}" -- "$cur")
      elif [[ ${args[$cmd]-} == files ]]; then
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      fi
      ;;
  esac
  return 0
}
complete -F _rch rch
)bash";
}

void completion_zsh(std::ostream& out, const Command& root) {
  const Tables t = tables_of(root);
  out << "#compdef rch\n"
         "# zsh completion for rch, made by `rch __completion zsh` from rch's own command definitions.\n"
         "_rch() {\n"
         "  local -A subs opts values args\n";
  assoc_tables(out, t, true);
  out << R"zsh(  local cmd=rch i w key cur=${words[CURRENT]} prev=${words[CURRENT-1]}
  for ((i = 2; i < CURRENT; i++)); do
    w=${words[i]}
    [[ $w == -- ]] && return 0
    key="$cmd $w"
    if (( ${+values[$key]} )); then
      ((i++))
      continue
    fi
    [[ $w == -* ]] && continue
    [[ " ${subs[$cmd]} " == *" $w "* ]] && cmd="$cmd $w"
  done
  key="$cmd $prev"
  local kind=${values[$key]-}
  case $kind in
    workers)
      compset -P '*,'
      compadd -- ${(f)"$(${words[1]} __complete workers 2>/dev/null)"}
      ;;
    files) _files ;;
    dirs) _files -/ ;;
    choices:*) compadd -- ${=${kind#choices:}} ;;
    text) ;;
    *)
      if [[ $cur == -* ]]; then
        compadd -- ${=opts[$cmd]}
      elif (( ${+subs[$cmd]} )); then
        compadd -- ${=subs[$cmd]}
      elif [[ ${args[$cmd]-} == files ]]; then
        _files
      fi
      ;;
  esac
}
_rch "$@"
)zsh";
}

int complete_workers() {
  const auto path = Paths::from_env().config_dir / "workers.toml";
  auto workers = load_workers(path);
  if (!workers) return 1;  // completion stays silent; rch config check says why
  std::set<std::string> tags;
  std::vector<std::string> ordered;
  for (const auto& w : *workers) {
    std::cout << w.id << "\n";
    for (const auto& tag : w.tags) {
      if (tags.insert(tag).second) ordered.push_back(tag);
    }
  }
  for (const auto& tag : ordered) std::cout << "@" << tag << "\n";
  std::cout << "@failed\n";
  return 0;
}

}  // namespace

DocCommands::DocCommands(CLI::App& app) : app_(app) {
  // group(""): not in --help, the man page or completion.
  man_ = app.add_subcommand("__man", "Print a man page (troff)")->group("");
  man_->add_option("PAGE", page_, "rch or rch-config")->required()->check(CLI::IsMember({"rch", "rch-config"}));
  completion_ = app.add_subcommand("__completion", "Print a shell completion script")->group("");
  completion_->add_option("SHELL", shell_, "bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  complete_ = app.add_subcommand("__complete", "Print completion candidates")->group("");
  complete_->add_option("WHAT", what_, "workers: ids and @tags of workers.toml")
      ->required()
      ->check(CLI::IsMember({"workers"}));
}

std::optional<int> DocCommands::run() const {
  if (*complete_) return complete_workers();
  if (!*man_ && !*completion_) return std::nullopt;
  const Command root = walk(app_, {"rch"}, {});
  if (*man_ && page_ == "rch-config") return man_config(std::cout);
  if (*man_) {
    man_rch(std::cout, root);
  } else if (shell_ == "bash") {
    completion_bash(std::cout, root);
  } else {
    completion_zsh(std::cout, root);
  }
  return 0;
}

}  // namespace rch::cli
