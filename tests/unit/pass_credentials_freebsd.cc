// clang-format off
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
// clang-format on

#include "pass_credentials.h"

namespace nsbroker::testing {

bool PassCredentials(int sock) {
  int on = 1;  // unix(4): SCM_CREDS2 on every message, not only the first (LOCAL_CREDS)
  return setsockopt(sock, SOL_LOCAL, LOCAL_CREDS_PERSISTENT, &on, sizeof on) == 0;
}

}  // namespace nsbroker::testing
