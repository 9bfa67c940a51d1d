// Test helper owning the one platform difference wire_test needs: asking the kernel to attach
// the sender's credentials to what a unix socket receives. Never used outside tests.
#pragma once

namespace nsbroker::testing {

// After this, every message `sock` receives carries a credentials control message (not
// SCM_RIGHTS): SO_PASSCRED on Linux, LOCAL_CREDS_PERSISTENT on FreeBSD. False on failure.
bool PassCredentials(int sock);

}  // namespace nsbroker::testing
