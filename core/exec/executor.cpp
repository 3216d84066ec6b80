// Executor over standalone Asio: an io_context run by the caller's thread and
// an asio::thread_pool for blocking jobs. This is the only file that includes Asio.
#include "core/exec/executor.hpp"

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>

#include <mutex>
#include <random>

namespace rch {

struct Executor::Impl {
  explicit Impl(std::size_t threads) : pool(threads), threads(threads) {}
  asio::io_context io;
  asio::thread_pool pool;
  std::size_t threads;
  bool shuffle = false;
  std::mutex rng_mutex;
  std::mt19937_64 rng;
};

Executor::Executor(std::size_t pool_threads) : impl_(std::make_unique<Impl>(pool_threads == 0 ? 1 : pool_threads)) {}

Executor::~Executor() { impl_->pool.join(); }

void Executor::run_blocking(BlockingJob job) {
  // The work guard keeps io.run() alive until the completion has been posted.
  auto work = asio::make_work_guard(impl_->io);
  asio::post(impl_->pool, [this, job = std::move(job), work = std::move(work)]() mutable {
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
    work.reset();
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

std::size_t Executor::pool_threads() const { return impl_->threads; }

void Executor::shuffle_completions(std::uint64_t seed) {
  impl_->shuffle = true;
  impl_->rng.seed(seed);
}

}  // namespace rch
