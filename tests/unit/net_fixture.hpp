// Local test servers for the core/net tests: tests/unit/https_server.py on
// 127.0.0.1 (HTTPS with a CA generated at test time, or plain HTTP), a
// self-signed certificate no one trusts, and small file helpers.
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/temp_dir.hpp"

namespace rch::test {

namespace fs = std::filesystem;

inline fs::path source_dir() {
  if (const char* dir = std::getenv("RCH_SOURCE_DIR")) return dir;
  return fs::path(__FILE__).parent_path().parent_path().parent_path();
}

// Runs argv with stdout and stderr appended to `log`; returns the exit status.
inline int run(const std::vector<std::string>& argv, const fs::path& log) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "a");
    if (f) {
      ::dup2(::fileno(f), 1);
      ::dup2(::fileno(f), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline void write_file(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  out << data;
  REQUIRE(out.good());
}

inline std::string read_whole(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

// A test CA, a server certificate it signs for 127.0.0.1 and localhost, and a
// self-signed certificate for the same names that no one trusts.
struct Certs {
  TempDir dir;
  fs::path ca, server_cert, server_key, self_cert, self_key;

  Certs() {
    const fs::path cnf = dir.path / "openssl.cnf";
    write_file(cnf,
               "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = rch test\n"
               "[ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
               "subjectKeyIdentifier = hash\n"
               "[server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
               "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n");
    ca = dir.path / "ca.pem";
    server_cert = dir.path / "server.pem";
    server_key = dir.path / "server.key";
    self_cert = dir.path / "self.pem";
    self_key = dir.path / "self.key";
    const fs::path log = dir.path / "openssl.log";
    const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"};
    auto cmd = [&](std::vector<std::string> head, const std::vector<std::string>& tail) {
      head.insert(head.end(), tail.begin(), tail.end());
      return head;
    };
    auto must = [&](const std::vector<std::string>& argv) {
      int rc = run(argv, log);
      INFO(read_whole(log));
      REQUIRE(rc == 0);
    };
    must(cmd({"openssl", "req", "-x509", "-config", cnf, "-extensions", "ca", "-days", "2", "-subj", "/CN=rch test CA",
              "-keyout", dir.path / "ca.key", "-out", ca},
             ec));
    must(cmd({"openssl", "req", "-new", "-config", cnf, "-subj", "/CN=localhost", "-keyout", server_key, "-out",
              dir.path / "server.csr"},
             ec));
    must({"openssl", "x509", "-req", "-in", dir.path / "server.csr", "-CA", ca, "-CAkey", dir.path / "ca.key",
          "-set_serial", "2", "-days", "2", "-extfile", cnf, "-extensions", "server", "-out", server_cert});
    must(cmd({"openssl", "req", "-x509", "-config", cnf, "-extensions", "server", "-days", "2", "-subj",
              "/CN=localhost", "-keyout", self_key, "-out", self_cert},
             ec));
  }
};

// The interpreter behind `python3`, resolved once: version-manager shims
// (pyenv) cost a few hundred milliseconds per start.
inline const std::string& python() {
  static const std::string path = [] {
    std::string out;
    if (FILE* p = ::popen("python3 -c 'import sys; print(sys.executable)' 2>/dev/null", "r")) {
      char buf[4096];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      ::pclose(p);
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out.empty() ? std::string("python3") : out;
  }();
  return path;
}

// tests/unit/https_server.py serving `root`, stopped on destruction.
class Server {
 public:
  Server(const fs::path& root, const fs::path& work, const std::string& name, const fs::path& cert = {},
         const fs::path& key = {}, const std::string& drop = {})
      : log_(work / (name + ".requests")) {
    const fs::path port_file = work / (name + ".port");
    const fs::path out = work / (name + ".out");
    std::vector<std::string> argv = {python(),
                                     (source_dir() / "tests/unit/https_server.py").string(),
                                     port_file.string(),
                                     root.string(),
                                     "--log",
                                     log_.string()};
    if (!cert.empty()) argv.insert(argv.end(), {"--cert", cert.string(), "--key", key.string()});
    if (!drop.empty()) argv.insert(argv.end(), {"--drop", drop});
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      FILE* f = std::fopen(out.c_str(), "w");
      if (f) ::dup2(::fileno(f), 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!fs::exists(port_file) && std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("https_server.py exited: " << read_whole(out));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(fs::exists(port_file));
    port_ = std::stoi(read_whole(port_file));
    base_ = std::string(cert.empty() ? "http" : "https") + "://127.0.0.1:" + std::to_string(port_);
  }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  std::string url(const std::string& path) const { return base_ + path; }
  std::string requests() const { return read_whole(log_); }

 private:
  fs::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string base_;
};

// Proxies from the environment would take loopback requests elsewhere.
inline void no_proxies() {
  for (const char* v : {"http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"}) ::unsetenv(v);
}

// Generated once per process: every Fixture would otherwise pay for it.
inline const Certs& test_certs() {
  static const Certs certs;
  return certs;
}

}  // namespace rch::test
