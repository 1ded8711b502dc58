// Row-band parallelism shared by the rawproof kernels.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace rawproof {

// Upper bound on the `threads` argument: far above any real core count, low enough
// that a typo cannot ask for a million OS threads.
constexpr std::int64_t kMaxThreads = 1024;

// Validates a user `threads` argument (0 = all hardware threads) and returns the count.
inline unsigned resolve_threads(std::int64_t threads) {
    if (threads < 0 || threads > kMaxThreads) {
        throw std::invalid_argument("threads must be in [0, " + std::to_string(kMaxThreads) +
                                    "] (0 = all cores), got " + std::to_string(threads));
    }
    if (threads == 0) {
        const unsigned hw = std::thread::hardware_concurrency();
        return hw == 0 ? 1u : hw;
    }
    return static_cast<unsigned>(threads);
}

// Calls fn(begin, end) on contiguous slices of [0, n) from up to `threads` threads,
// the calling thread taking the first slice. Slices hold at least `min_per_thread`
// items so that small inputs do not pay for thread start-up. fn must not throw.
// If the OS refuses a thread, its slice runs on the calling thread instead.
template <class Fn>
void parallel_for(std::size_t n, unsigned threads, std::size_t min_per_thread, Fn&& fn) {
    if (n == 0) return;
    const std::size_t by_work = std::max<std::size_t>(1, n / std::max<std::size_t>(1, min_per_thread));
    const std::size_t nt = std::min<std::size_t>({static_cast<std::size_t>(std::max(1u, threads)), by_work, n});
    if (nt == 1) {
        fn(std::size_t{0}, n);
        return;
    }
    auto bounds = [n, nt](std::size_t i) { return n * i / nt; };
    std::vector<std::thread> pool;
    pool.reserve(nt - 1);
    std::size_t next = 1;
    try {
        for (; next < nt; ++next) {
            pool.emplace_back([&fn, b = bounds(next), e = bounds(next + 1)] { fn(b, e); });
        }
    } catch (const std::system_error&) {
        // Fall through: the slices that got no thread run below on this one.
    }
    fn(bounds(0), bounds(1));
    for (std::size_t i = next; i < nt; ++i) fn(bounds(i), bounds(i + 1));
    for (auto& t : pool) t.join();
}

}  // namespace rawproof
