// nsbrokerd: parses the command line and runs the service (see nsbrokerd(8)).
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "audit.h"
#include "google/protobuf/stubs/logging.h"
#include "service.h"

namespace {

constexpr char kUsage[] =
    "usage: nsbrokerd [-c FILE] [--check-config] [--socket PATH] [--self] [-v]\n"
    "  -c FILE          config file (default /etc/nsbroker/nsbroker.conf)\n"
    "  --check-config   validate the config, open its targets and exit: 0 valid (unavailable\n"
    "                   targets are warnings), 1 FILE:LINE:COL: reason\n"
    "  --socket PATH    serve on PATH instead of the config's socket\n"
    "  --self           without -c: expose this process's namespaces as target 'self' to root\n"
    "  -v               log connections\n"
    "  -V, --version    print the version and exit\n"
    "  --compile-config FD  internal: the opener's reload step (nsbrokerd(8))\n";

int Usage(const char* problem) {
  std::fprintf(stderr, "nsbrokerd: %s\n%s", problem, kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // protobuf logs every string field with invalid UTF-8 it parses, so any local peer could
  // make the broker write a stderr line per request. The decode error the peer gets and the
  // audit line say what happened; config errors come through config.cc's own collector.
  google::protobuf::SetLogHandler(nullptr);
  nsbroker::ServiceOptions options;
  bool check = false;
  std::optional<int> compile_fd;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "-c" || arg == "--config") {
      const char* v = value();
      if (v == nullptr) return Usage("-c needs a FILE");
      options.config_path = v;
      options.config_given = true;
    } else if (arg == "--socket") {
      const char* v = value();
      if (v == nullptr || v[0] != '/') return Usage("--socket needs an absolute PATH");
      options.socket = v;
    } else if (arg == "--check-config") {
      check = true;
    } else if (arg == "--compile-config") {
      const char* v = value();
      int fd = -1;
      std::string_view s = v == nullptr ? "" : v;
      auto [end, error] = std::from_chars(s.data(), s.data() + s.size(), fd);
      if (s.empty() || error != std::errc() || end != s.data() + s.size() || fd < 0) {
        return Usage("--compile-config needs a descriptor number");
      }
      compile_fd = fd;
    } else if (arg == "--self") {
      options.self = true;
    } else if (arg == "-v" || arg == "--verbose") {
      options.verbose = true;
    } else if (arg == "-V" || arg == "--version") {
      std::fputs("nsbrokerd (nsbroker) " NSB_VERSION "\n", stdout);
      return 0;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      return Usage(("unknown argument '" + arg + "'").c_str());
    }
  }
  if (options.self && options.config_given) return Usage("--self is the config: drop -c");
  if (compile_fd) return nsbroker::CompileConfigInto(options, nsbroker::UniqueFd(*compile_fd));
  if (check) {
    // What start-up would say: errors exit 1, unavailable targets are warnings.
    auto report = nsbroker::CheckConfig(options);
    if (!report) {
      std::fprintf(stderr, "%s\n", report.error().message.c_str());
      return 1;
    }
    for (const std::string& warning : report->warnings) {
      std::fprintf(stderr, "%s\n", warning.c_str());
    }
    std::string unavailable = report->warnings.empty()
                                  ? ""
                                  : ", " + std::to_string(report->warnings.size()) + " unavailable";
    std::printf("%s: OK, %zu targets%s\n", report->config.file.c_str(),
                report->config.targets.size(), unavailable.c_str());
    return 0;
  }
  auto daemon = nsbroker::Daemon::Build(options);
  if (!daemon) {
    nsbroker::LogLine(daemon.error().message);
    return 1;
  }
  return (*daemon)->Run() ? 0 : 1;
}
