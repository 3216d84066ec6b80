// What to do with a host whose key is not in known_hosts (shared by the ssh
// session and config.toml's [defaults] host_key_policy).
#pragma once

namespace rch {

enum class HostKeyPolicy {
  strict,      // an unknown host is refused
  accept_new,  // an unknown host is added to known_hosts; a changed key is still refused
};

}  // namespace rch
