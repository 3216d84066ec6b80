// "Did you mean …?" for config keys: edit distance and the nearest candidate.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace rch {

// Levenshtein distance (insert, delete, substitute each cost 1).
std::size_t levenshtein(std::string_view a, std::string_view b);

// The candidate nearest to `word`, or "" when none is within `max_distance`
// edits (a suggestion that rewrites most of a short word helps nobody, so the
// distance must also be less than the candidate's length).
std::string nearest(std::string_view word, std::span<const std::string_view> candidates, std::size_t max_distance = 2);

// " (did you mean 'host'?)", or "" when nothing is near.
std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates);

}  // namespace rch
