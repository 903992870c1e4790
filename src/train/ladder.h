// `meshlm ladder`: the same model, data, seed and token budget trained through a list of
// precision formats and plans (docs/numerics.md), then a table and a plot of the validation
// loss in nats per byte against the GEMMs' bits per weight and activation, relative to fp32.
//
// Each entry is one training run in <out>/<name>; a finished entry leaves <out>/<name>/
// ladder_result.json and is not run again, so an interrupted ladder continues where it
// stopped (the same command). The baselines (fp32, bf16) run with `seeds` seeds each, which
// measures the run-to-run scatter the other entries are judged against.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/config.h"

namespace meshlm {

struct LadderEntry {
  std::string name;       // its run directory under the ladder's: "mxfp4", "bf16_seed2"
  std::string precision;  // --precision
  std::string plan;       // --precision-plan ("" none)
  std::string on_instability = "warn";
  int64_t seed_offset = 0;  // added to the run's seed (and data seed)
};

// The standard ladder: fp32 and bf16 (`seeds` seeds each), fp16, fp8 (delayed), fp8-current,
// fp8-rowwise, mxfp8, mxfp6, mxfp4 (naive), nvfp4+recipe, a plan keeping the first and last
// blocks in bf16 around nvfp4+recipe, and naive mxfp4 under automatic promotion.
std::vector<LadderEntry> default_ladder(int seeds);
// Entries from text, one per line: "name | precision | plan | on_instability | seed offset"
// (trailing fields may be left out; '#' starts a comment). Throws naming the bad line.
std::vector<LadderEntry> parse_ladder(const std::string& text);

struct LadderRow {
  LadderEntry entry;
  double val_loss_per_byte = 0, val_loss = 0, last_loss = 0;
  double bits = 0, low_bit_share = 0;  // TrainResult::gemm_bits, low_bit_flops_share
  double tokens_per_s = 0, seconds = 0;
  int64_t steps = 0, instability_steps = 0, promotions = 0;
  nlohmann::json to_json() const;
  static LadderRow from_json(const nlohmann::json& j);
};

// Runs every entry not yet finished under `out` (base: the shared config; its out is
// replaced), printing progress to `log`, and returns every entry's row in order.
std::vector<LadderRow> run_ladder(const TrainConfig& base, const std::vector<LadderEntry>& entries,
                                  const std::string& out, std::ostream& log);

// The table (markdown): per entry its bits, val nats/byte, the relative difference from the
// mean of the fp32 entries, from bf16's, its 4-bit share of GEMM FLOPs and its instability
// steps; with the scatter of the repeated baselines above it.
std::string ladder_table(const std::vector<LadderRow>& rows, const TrainConfig& base);
// The plot (SVG): val nats/byte against bits, one labelled point per entry, the fp32 band.
std::string ladder_svg(const std::vector<LadderRow>& rows, const std::string& title);

}  // namespace meshlm
