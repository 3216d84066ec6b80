// Executor over standalone Asio: an io_context run by the caller's thread and
// a pool of threads for blocking jobs. This is the only file that includes Asio.
#include "core/exec/executor.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace rch {

// The pool starts a thread when a job arrives and none is idle, up to its
// bound: the callers bound their own concurrency (--parallel, probe_parallel),
// and a fixed small pool would quietly cap them (64 probes in 8 threads).
struct Executor::Impl {
  explicit Impl(std::size_t max_threads) : max_threads(max_threads) {}
  asio::io_context io;
  std::size_t max_threads;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::function<void()>> jobs;
  std::vector<std::thread> threads;
  std::size_t idle = 0;
  bool stopping = false;
  bool shuffle = false;
  std::mutex rng_mutex;
  std::mt19937_64 rng;

  void submit(std::function<void()> job) {
    std::lock_guard lock(mutex);
    jobs.push_back(std::move(job));
    if (jobs.size() > idle && threads.size() < max_threads) {
      threads.emplace_back([this] { work(); });
    } else {
      wake.notify_one();
    }
  }

  // Runs jobs until the executor ends and none is left.
  void work() {
    std::unique_lock lock(mutex);
    for (;;) {
      ++idle;
      wake.wait(lock, [this] { return stopping || !jobs.empty(); });
      --idle;
      if (jobs.empty()) return;
      auto job = std::move(jobs.front());
      jobs.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    for (auto& t : threads) t.join();
  }
};

Executor::Executor(std::size_t pool_threads) : impl_(std::make_unique<Impl>(pool_threads == 0 ? 1 : pool_threads)) {}

Executor::~Executor() = default;

void Executor::run_blocking(BlockingJob job) {
  // The work guard keeps io.run() alive until the completion has been posted.
  auto work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(impl_->io.get_executor());
  impl_->submit([this, job = std::move(job), work]() {
    Completion done = job();
    if (impl_->shuffle) {
      std::chrono::milliseconds delay;
      {
        std::lock_guard lock(impl_->rng_mutex);
        delay = std::chrono::milliseconds(impl_->rng() % 16);
      }
      asio::post(impl_->io, [this, delay, done = std::move(done)]() mutable { after(delay, std::move(done)); });
    } else {
      asio::post(impl_->io, std::move(done));
    }
    work->reset();
  });
}

void Executor::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

void Executor::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(impl_->io, delay);
  timer->async_wait([timer, fn = std::move(fn)](const std::error_code&) { fn(); });
}

void Executor::run() {
  impl_->io.restart();
  impl_->io.run();
}

std::size_t Executor::pool_threads() const { return impl_->max_threads; }

void Executor::shuffle_completions(std::uint64_t seed) {
  impl_->shuffle = true;
  impl_->rng.seed(seed);
}

}  // namespace rch
