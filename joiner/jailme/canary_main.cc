// Not installed: jailme's base with nsbroker::Spawn (threads, the report pipe) linked in.
// The trusted-base check must refuse it (ctest jailme_trusted_base_rejects_a_forbidden_symbol),
// which shows that the check sees what a change to jailme would pull in.
#include "nsbroker/join.h"

int main(int argc, char**) {
  if (argc > 1000) return nsbroker::Spawn(nsbroker::Grant{}, {"true"}) ? 0 : 1;
  return 0;
}
