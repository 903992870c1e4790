#include "train/ladder.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "train/checkpoint.h"
#include "train/plot.h"
#include "train/trainer.h"

namespace meshlm {

namespace fs = std::filesystem;

namespace {

std::string trimmed(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string num(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// The mean and the half-range of the rows whose precision is `p` with no plan (the baseline's
// seeds); count 0 when there are none.
struct Baseline {
  double mean = 0, half_range = 0;
  int count = 0;
};
Baseline baseline(const std::vector<LadderRow>& rows, const std::string& p) {
  Baseline b;
  double lo = 1e300, hi = -1e300;
  for (const LadderRow& r : rows)
    if (r.entry.precision == p && r.entry.plan.empty() && r.entry.on_instability == "warn") {
      b.mean += r.val_loss_per_byte;
      lo = std::min(lo, r.val_loss_per_byte);
      hi = std::max(hi, r.val_loss_per_byte);
      b.count++;
    }
  if (b.count == 0) return b;
  b.mean /= b.count;
  b.half_range = (hi - lo) / 2;
  return b;
}

// The plain run of precision `p` with this seed offset (nullptr: none): an entry's paired
// baseline, same initialization and data order, so only the rounding differs.
const LadderRow* same_seed(const std::vector<LadderRow>& rows, const std::string& p, int64_t seed_offset) {
  for (const LadderRow& r : rows)
    if (r.entry.precision == p && r.entry.plan.empty() && r.entry.on_instability == "warn" && r.entry.seed_offset == seed_offset)
      return &r;
  return nullptr;
}

std::string relative(double v, double base) { return num("%+.2f%%", 100 * (v - base) / base); }

}  // namespace

std::vector<LadderEntry> default_ladder(int seeds) {
  std::vector<LadderEntry> e;
  for (const char* p : {"fp32", "bf16"})
    for (int s = 0; s < std::max(1, seeds); s++) e.push_back({s ? std::string(p) + "_seed" + std::to_string(s + 1) : p, p, "", "warn", s});
  for (const char* p : {"fp16", "fp8", "fp8-current", "mxfp8", "mxfp6", "mxfp4", "nvfp4+recipe"}) e.push_back({p, p, "", "warn", 0});
  e.push_back({"nvfp4+recipe_ends_bf16", "bf16", "layers.0,layers.-1: bf16; *: nvfp4+recipe", "warn", 0});
  return e;
}

std::vector<LadderEntry> parse_ladder(const std::string& text) {
  std::vector<LadderEntry> out;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    line = trimmed(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::istringstream parts(line);
    for (std::string p; std::getline(parts, p, '|');) f.push_back(trimmed(p));
    MESHLM_CHECK(f.size() >= 2 && f.size() <= 5 && !f[0].empty() && !f[1].empty(),
                 "ladder entries, line " + std::to_string(lineno) + ": expected 'name | precision [| plan [| on_instability [| seed offset]]]'");
    LadderEntry e{f[0], f[1], f.size() > 2 ? f[2] : "", f.size() > 3 && !f[3].empty() ? f[3] : "warn", 0};
    if (f.size() > 4) e.seed_offset = std::atoll(f[4].c_str());
    for (const LadderEntry& o : out) MESHLM_CHECK(o.name != e.name, "ladder entries: '" + e.name + "' twice");
    out.push_back(e);
  }
  MESHLM_CHECK(!out.empty(), "ladder entries: none");
  return out;
}

nlohmann::json LadderRow::to_json() const {
  return {{"name", entry.name}, {"precision", entry.precision}, {"plan", entry.plan},
          {"on_instability", entry.on_instability}, {"seed_offset", entry.seed_offset},
          {"val_loss_per_byte", val_loss_per_byte}, {"val_loss", val_loss}, {"last_loss", last_loss},
          {"bits", bits}, {"low_bit_share", low_bit_share}, {"tokens_per_s", tokens_per_s}, {"seconds", seconds},
          {"steps", steps}, {"instability_steps", instability_steps}, {"promotions", promotions}};
}

LadderRow LadderRow::from_json(const nlohmann::json& j) {
  LadderRow r;
  r.entry = {j.at("name"), j.at("precision"), j.value("plan", ""), j.value("on_instability", "warn"),
             j.value("seed_offset", int64_t(0))};
  r.val_loss_per_byte = j.at("val_loss_per_byte"), r.val_loss = j.at("val_loss"), r.last_loss = j.value("last_loss", 0.0);
  r.bits = j.at("bits"), r.low_bit_share = j.value("low_bit_share", 0.0), r.tokens_per_s = j.value("tokens_per_s", 0.0);
  r.seconds = j.value("seconds", 0.0), r.steps = j.at("steps"), r.instability_steps = j.value("instability_steps", int64_t(0));
  r.promotions = j.value("promotions", int64_t(0));
  return r;
}

std::vector<LadderRow> run_ladder(const TrainConfig& base, const std::vector<LadderEntry>& entries,
                                  const std::string& out, std::ostream& log) {
  fs::create_directories(out);
  std::vector<LadderRow> rows;
  for (size_t k = 0; k < entries.size(); k++) {
    const LadderEntry& e = entries[k];
    const fs::path dir = fs::path(out) / e.name, done = dir / "ladder_result.json";
    if (fs::exists(done)) {
      std::ifstream f(done);
      rows.push_back(LadderRow::from_json(nlohmann::json::parse(f)));
      log << "ladder  " << e.name << ": done before (" << num("%.4f", rows.back().val_loss_per_byte) << " nats/byte)\n";
      continue;
    }
    TrainConfig c = base;
    c.precision = e.precision;
    c.precision_plan = e.plan;
    c.on_instability = e.on_instability;
    c.seed += e.seed_offset;
    c.data_seed += e.seed_offset;
    c.out = dir.string();
    c.validate();
    const std::vector<std::string> saved = fs::exists(dir) ? run_checkpoints(dir.string()) : std::vector<std::string>{};
    log << "ladder  [" << k + 1 << "/" << entries.size() << "] " << e.name << ": --precision " << e.precision
        << (e.plan.empty() ? "" : " --precision-plan \"" + e.plan + "\"")
        << (e.on_instability == "warn" ? "" : " --on-instability " + e.on_instability)
        << (saved.empty() ? "" : ", resuming " + saved.back()) << std::endl;
    const auto t0 = std::chrono::steady_clock::now();
    std::ostringstream quiet;
    const TrainResult r = train(c, saved.empty() ? "" : saved.back(), quiet, true);
    MESHLM_CHECK(!r.interrupted, "ladder: interrupted in " + e.name + "; run the same command again to continue");
    MESHLM_CHECK(r.val_loss_per_byte > 0, "ladder: " + e.name + " ran no evaluation (eval_batches 0?)");
    LadderRow row;
    row.entry = e;
    row.val_loss_per_byte = r.val_loss_per_byte, row.val_loss = r.val_loss, row.last_loss = r.last_loss;
    row.bits = r.gemm_bits, row.low_bit_share = r.low_bit_flops_share, row.tokens_per_s = r.tokens_per_s;
    row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    row.steps = r.steps, row.instability_steps = r.instability_steps, row.promotions = r.promotions;
    write_file_atomic(done.string(), row.to_json().dump(2) + "\n");
    log << "        val " << num("%.4f", row.val_loss_per_byte) << " nats/byte, " << num("%.2f", row.bits)
        << " bits, " << row.instability_steps << " unstable steps, " << num("%.0f", row.seconds) << " s" << std::endl;
    rows.push_back(row);
  }
  return rows;
}

std::string ladder_table(const std::vector<LadderRow>& rows, const TrainConfig& base) {
  const Baseline f32 = baseline(rows, "fp32"), b16 = baseline(rows, "bf16");
  std::ostringstream t;
  t << "model " << base.model().describe() << "; " << rows.front().steps << " steps of " << base.batch_size << " x "
    << base.seq_len << " tokens; val " << base.eval_batches << " batches\n\n";
  if (f32.count > 1 || b16.count > 1)
    t << "run-to-run scatter (half the range over seeds): fp32 " << num("%.4f", f32.half_range) << " nats/byte ("
      << num("%.2f", f32.mean > 0 ? 100 * f32.half_range / f32.mean : 0) << "%, " << f32.count << " seeds), bf16 "
      << num("%.4f", b16.half_range) << " (" << num("%.2f", b16.mean > 0 ? 100 * b16.half_range / b16.mean : 0) << "%, "
      << b16.count << " seeds)\n";
  std::string paired;  // fp32 against bf16 from the same seed: the rounding's own scatter
  for (const LadderRow& r : rows)
    if (const LadderRow* b = same_seed(rows, "bf16", r.entry.seed_offset); b && &r == same_seed(rows, "fp32", r.entry.seed_offset))
      paired += (paired.empty() ? "" : ", ") + relative(r.val_loss_per_byte, b->val_loss_per_byte);
  if (!paired.empty()) t << "fp32 against bf16 from the same seed (only the rounding differs): " << paired << "\n";
  t << "\n| entry | precision | plan | bits (weight, act.) | GEMM FLOPs at <= 4.5 bits | val nats/byte | vs fp32 | vs bf16 | vs bf16, same seed | unstable steps | promotions | tokens/s (simulated) |\n"
    << "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const LadderRow& r : rows) {
    auto rel = [&](const Baseline& b) { return b.count ? relative(r.val_loss_per_byte, b.mean) : std::string("-"); };
    const LadderRow* pair = same_seed(rows, "bf16", r.entry.seed_offset);
    t << "| " << r.entry.name << " | " << r.entry.precision << " | " << (r.entry.plan.empty() ? "-" : "`" + r.entry.plan + "`")
      << " | " << num("%.2f", r.bits) << " | " << num("%.0f%%", 100 * r.low_bit_share) << " | "
      << num("%.4f", r.val_loss_per_byte) << " | " << rel(f32) << " | " << rel(b16) << " | "
      << (pair && pair != &r ? relative(r.val_loss_per_byte, pair->val_loss_per_byte) : std::string("-")) << " | "
      << r.instability_steps << " | " << r.promotions << " | " << num("%.0f", r.tokens_per_s) << " |\n";
  }
  return t.str();
}

std::string ladder_svg(const std::vector<LadderRow>& rows, const std::string& title) {
  const double W = 900, H = 560, x0 = 90, y0 = 60, w = 760, h = 420;
  double lo = 1e300, hi = -1e300;
  for (const LadderRow& r : rows) lo = std::min(lo, r.val_loss_per_byte), hi = std::max(hi, r.val_loss_per_byte);
  const double pad = std::max(1e-4, (hi - lo) * 0.1);
  lo -= pad, hi += pad;
  auto px = [&](double bits) { return x0 + (std::log2(bits) - 2) / 3.0 * w; };  // 4 .. 32 bits, log scale
  auto py = [&](double v) { return y0 + h - (v - lo) / (hi - lo) * h; };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif'>\n"
    << "<rect width='100%' height='100%' fill='white'/>\n<text x='" << W / 2 << "' y='30' text-anchor='middle' font-size='15'>"
    << xml_escape(title) << "</text>\n<rect x='" << x0 << "' y='" << y0 << "' width='" << w << "' height='" << h
    << "' fill='none' stroke='#444'/>\n";
  const Baseline f32 = baseline(rows, "fp32");
  if (f32.count)
    s << "<rect x='" << x0 << "' y='" << py(f32.mean + f32.half_range) << "' width='" << w << "' height='"
      << std::max(1.0, py(f32.mean - f32.half_range) - py(f32.mean + f32.half_range))
      << "' fill='#dde8f5'/><text x='" << x0 + 4 << "' y='" << py(f32.mean) - 4 << "' font-size='10'>fp32 (seeds)</text>\n";
  for (double b : {4.0, 6.0, 8.0, 16.0, 32.0})
    s << "<text x='" << px(b) << "' y='" << y0 + h + 16 << "' text-anchor='middle' font-size='11'>" << b << "</text>\n";
  for (int i = 0; i <= 4; i++)
    s << "<text x='" << x0 - 6 << "' y='" << py(lo + (hi - lo) * i / 4) + 4 << "' text-anchor='end' font-size='11'>"
      << num("%.4f", lo + (hi - lo) * i / 4) << "</text>\n";
  s << "<text x='" << x0 + w / 2 << "' y='" << H - 20
    << "' text-anchor='middle' font-size='12'>bits per weight and activation (GEMM operands, block scales counted; log scale)</text>\n"
    << "<text x='20' y='" << y0 + h / 2 << "' font-size='12' transform='rotate(-90 20 " << y0 + h / 2
    << ")' text-anchor='middle'>validation loss, nats per byte</text>\n";
  for (size_t i = 0; i < rows.size(); i++) {
    const LadderRow& r = rows[i];
    const double x = px(std::clamp(r.bits, 4.0, 32.0)), y = py(r.val_loss_per_byte);
    s << "<circle cx='" << x << "' cy='" << y << "' r='4' fill='" << (r.instability_steps ? "#c03030" : "#2060b0")
      << "'/><text x='" << x + 6 << "' y='" << y + (i % 2 ? 12 : -6) << "' font-size='10'>" << xml_escape(r.entry.name)
      << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace meshlm
