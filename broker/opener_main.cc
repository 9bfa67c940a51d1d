// nsbroker-opener: the root half of nsbrokerd's privilege separation (docs/PRIVSEP.md), which
// nsbrokerd execs in place of itself after forking its server. Not for running by hand: its
// one argument is the hand-over descriptor nsbrokerd made.
#include <charconv>
#include <cstdio>
#include <string_view>

#include "log.h"
#include "opener.h"

int main(int argc, char** argv) {
  std::string_view fd_arg = argc == 3 && std::string_view(argv[1]) == "--handover" ? argv[2] : "";
  int fd = -1;
  auto [end, error] = std::from_chars(fd_arg.data(), fd_arg.data() + fd_arg.size(), fd);
  if (fd_arg.empty() || error != std::errc() || end != fd_arg.data() + fd_arg.size() || fd < 0) {
    std::fputs("nsbroker-opener: run by nsbrokerd for run_as (nsbrokerd(8)), not by hand\n",
               stderr);
    return 2;
  }
  nsbroker::UniqueFd handover(fd);
  auto setup = nsbroker::TakeHandover(std::move(handover));
  if (!setup) {
    // The server sees the channel close with this process and stops (docs/PRIVSEP.md).
    nsbroker::LogLine("opener: " + setup.error().message, nsbroker::LogPriority::kError);
    return 1;
  }
  return nsbroker::Opener(std::move(*setup)).Run();
}
