// A libnsjoin user built against an installed tree only: consumer SOCKET TARGET.
#include <nsbroker/client.h>

#include <cstdio>
int main(int argc, char** argv) {
  if (argc != 3) return 2;
  auto client = nsbroker::Client::Connect(argv[1]);
  if (!client) return std::fprintf(stderr, "%s\n", client.error().message.c_str()), 1;
  auto grant = client->Join(argv[2]);
  if (!grant) return std::fprintf(stderr, "%s\n", grant.error().message.c_str()), 1;
  std::printf("%s: %zu entries\n", grant->target.c_str(), grant->entries.size());
}
