#include <sys/socket.h>

#include "pass_credentials.h"

namespace nsbroker::testing {

bool PassCredentials(int sock) {
  int on = 1;  // socket(7): SCM_CREDENTIALS on every datagram
  return setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == 0;
}

}  // namespace nsbroker::testing
