// FreeBSD has no systemd: rc(8) starts nsbrokerd, which binds its own sockets and notifies
// no one (docs/FREEBSD.md).
#include "systemd.h"

namespace nsbroker {

Result<PassedSockets> TakePassedSockets() { return PassedSockets{}; }
void NotifyReady(std::string_view) {}
void NotifyReloading() {}
void NotifyStopping() {}
bool StderrIsJournal() { return false; }

}  // namespace nsbroker
