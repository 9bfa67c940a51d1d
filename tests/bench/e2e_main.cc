// nsbroker-e2e: what whole commands cost end to end, from fork to exit, interleaved. Each
// round runs every command once, in the order given, so that they share the machine's mood.
// Per command: the median wall time, and the median CPU time the kernel charged to the
// command and its children (wait4's rusage, user + system: their sum is exact, while the
// split between them is sampled at the tick, meaningless for a millisecond's run). On a shared
// machine the CPU time moves far less than the wall time: a process waiting for a CPU is not
// charged.
// A benchmark program (scripts/bench), never a timed test.
//
//   nsbroker-e2e --runs 400 --command 'nsenter=/usr/bin/nsenter -t 42 -n /bin/true'
//                --command 'nsjoin=/usr/bin/nsjoin -t web -n -- /bin/true'
//
// A command is LABEL=PATH ARG..., its words split at spaces (no quoting); PATH is executed as
// given (execv). Its stdout goes to /dev/null. A command that fails stops the run (exit 1).
#include <fcntl.h>
#include <getopt.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

struct Command {
  std::string label;
  std::vector<std::string> words;
  std::vector<double> wall_us, cpu_us;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "nsbroker-e2e: %s\nusage: nsbroker-e2e [--runs N] --command 'LABEL=PATH ARG...' "
               "[--command ...]\n",
               why);
  std::exit(2);
}

double NowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

double Us(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

Command ParseCommand(const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == 0 || eq == std::string::npos) Usage("a command is LABEL=PATH ARG...");
  Command command{.label = spec.substr(0, eq)};
  std::string rest = spec.substr(eq + 1);
  std::size_t start = 0;
  while (start < rest.size()) {
    std::size_t end = rest.find(' ', start);
    if (end == std::string::npos) end = rest.size();
    if (end > start) command.words.push_back(rest.substr(start, end - start));
    start = end + 1;
  }
  if (command.words.empty()) Usage("a command needs a PATH");
  return command;
}

// One run: fork, execv, wait4. False (with a message) if it did not exit 0.
bool RunOnce(Command& command, int devnull) {
  std::vector<char*> argv;
  for (std::string& word : command.words) argv.push_back(word.data());
  argv.push_back(nullptr);
  double start = NowUs();
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("nsbroker-e2e: fork");
    return false;
  }
  if (pid == 0) {
    dup2(devnull, STDOUT_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  rusage usage{};
  while (wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) {
      std::perror("nsbroker-e2e: wait4");
      return false;
    }
  }
  double end = NowUs();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "nsbroker-e2e: %s: %s failed (wait status %d)\n", command.label.c_str(),
                 command.words[0].c_str(), status);
    return false;
  }
  command.wall_us.push_back(end - start);
  command.cpu_us.push_back(Us(usage.ru_utime) + Us(usage.ru_stime));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  static const option kLong[] = {{"runs", required_argument, nullptr, 'n'},
                                 {"command", required_argument, nullptr, 'c'},
                                 {nullptr, 0, nullptr, 0}};
  long runs = 100;
  std::vector<Command> commands;
  int c;
  while ((c = getopt_long(argc, argv, "n:c:", kLong, nullptr)) != -1) {
    switch (c) {
      case 'n': {
        char* end = nullptr;
        runs = std::strtol(optarg, &end, 10);
        if (end == optarg || *end != '\0' || runs < 1 || runs > 1000000) {
          Usage("--runs is 1..1000000");
        }
        break;
      }
      case 'c':
        commands.push_back(ParseCommand(optarg));
        break;
      default:
        Usage("unknown option");
    }
  }
  if (commands.empty() || optind != argc) Usage("give one --command or more, nothing else");
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (devnull < 0) {
    std::perror("nsbroker-e2e: /dev/null");
    return 1;
  }
  for (long round = 0; round < runs; ++round) {
    for (Command& command : commands) {
      if (!RunOnce(command, devnull)) return 1;
    }
  }
  for (const Command& command : commands) {
    std::printf("label=%s runs=%ld wall_median_us=%.1f cpu_median_us=%.1f\n", command.label.c_str(),
                runs, Median(command.wall_us), Median(command.cpu_us));
  }
  return 0;
}
