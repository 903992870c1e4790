#include "precision/numerics.h"

#include "core/files.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "parallel/tags.h"

namespace meshlm {

// The kept lines are rewritten atomically (a kill leaves the old file or the new one); then
// each step's lines are appended with checked writes (a full disk is an error naming the file).
NumericsReport::NumericsReport(const std::string& path, bool append, int64_t step) : out_(make_file(path, append, step)) {}

AppendFile NumericsReport::make_file(const std::string& path, bool append, int64_t step) {
  std::string kept;
  if (append && std::filesystem::exists(path)) {  // drop an abandoned tail past the resume step
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      try {
        if (nlohmann::json::parse(line).value("step", int64_t(0)) <= step) kept += line + "\n";
      } catch (const nlohmann::json::exception&) {
      }
    }
  }
  write_file_atomic(path, kept);
  return AppendFile(path, true);
}

std::vector<std::string> numerics_layers(const StageLayers& stage, int64_t n_layer) {
  std::vector<std::string> layers;
  if (stage.first) layers.push_back("embedding");
  for (int64_t l : stage.layers(n_layer)) layers.push_back("h." + std::to_string(l));
  if (stage.last) layers.push_back("final");
  return layers;
}

namespace {
DType report_format(const Model& model) { return model.dtype() == DType::fp64 ? DType::fp32 : model.dtype(); }
}  // namespace

std::vector<NumericsEntry> collect_numerics(const Model& model) {
  std::vector<NumericsEntry> entries;
  for (const std::string& layer : numerics_layers(model.stage(), model.config().n_layer))
    for (const char* kind : {"weights", "activations", "grads"}) entries.push_back({layer, kind, {}});
  auto find = [&](const std::string& layer, const std::string& kind) -> NumericsEntry* {
    for (NumericsEntry& e : entries)
      if (e.layer == layer && e.kind == kind) return &e;
    return nullptr;
  };
  const DType format = report_format(model);
  for (const Model::TensorSpan& s : model.tensor_spans())
    if (NumericsEntry* e = find(s.layer, s.kind)) e->stats.add(model.backend().tensor_stats(format, s.dtype, s.data, s.n));
  return entries;
}

std::vector<NumericsEntry> gather_numerics(const Model& stage, Communicator& pp, const Plan& plan) {
  auto pack = [](const std::vector<NumericsEntry>& entries) {
    std::vector<double> v;
    for (const NumericsEntry& e : entries) {
      const TensorStats& t = e.stats;
      v.insert(v.end(), {double(t.n), double(t.zero), double(t.underflow), double(t.subnormal),
                         double(t.overflow), t.amax});
    }
    return v;
  };
  std::vector<NumericsEntry> mine = collect_numerics(stage);
  if (pp.rank() != 0) {
    const std::vector<double> v = pack(mine);
    pp.send(v.data(), int64_t(v.size()), DType::fp64, 0, tags::kNumerics);
    return {};
  }
  for (int s = 1; s < pp.size(); s++) {
    std::vector<NumericsEntry> theirs;
    for (const std::string& layer : numerics_layers(plan.stage(s), stage.config().n_layer))
      for (const char* kind : {"weights", "activations", "grads"}) theirs.push_back({layer, kind, {}});
    std::vector<double> v(theirs.size() * 6);
    pp.recv(v.data(), int64_t(v.size()), DType::fp64, s, tags::kNumerics);
    for (size_t i = 0; i < theirs.size(); i++) {
      TensorStats& t = theirs[i].stats;
      const double* x = &v[6 * i];
      t.n = int64_t(x[0]);
      t.zero = int64_t(x[1]);
      t.underflow = int64_t(x[2]);
      t.subnormal = int64_t(x[3]);
      t.overflow = int64_t(x[4]);
      t.amax = x[5];
    }
    mine.insert(mine.end(), theirs.begin(), theirs.end());
  }
  return mine;
}

void NumericsReport::write(int64_t step, const Model& model, double loss_scale) {
  write(step, collect_numerics(model), report_format(model), loss_scale);
}

void NumericsReport::write(int64_t step, const std::vector<NumericsEntry>& entries, DType format,
                           double loss_scale) {
  std::string text;
  for (const NumericsEntry& e : entries) {
    const TensorStats& t = e.stats;
    if (t.n == 0) continue;
    const double n = double(t.n);
    nlohmann::ordered_json j = {{"step", step},         {"layer", e.layer},
                                {"kind", e.kind},       {"format", dtype_name(format)},
                                {"loss_scale", loss_scale}, {"n", t.n},
                                {"amax", t.amax},       {"zero", double(t.zero) / n},
                                {"underflow", double(t.underflow) / n},
                                {"subnormal", double(t.subnormal) / n},
                                {"overflow", double(t.overflow) / n}};
    text += j.dump() + "\n";
  }
  out_.write(text);
}

void NumericsReport::write_event(const nlohmann::json& e) { out_.write(e.dump() + "\n"); }

namespace {

std::string pct(double f) {
  char b[32];
  if (f == 0) return "0";
  std::snprintf(b, sizeof b, f < 1e-4 ? "%.1e" : "%.3f%%", f < 1e-4 ? f : f * 100);
  return b;
}

std::string num(const char* f, double x) {
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

// Line colours, one per layer (cycled).
constexpr const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

// One SVG line chart: series of (step, value) per name, y in log10 or linear.
void svg_panel(std::ostringstream& svg, double x0, double y0, double w, double h,
               const std::string& title, const std::map<std::string, std::vector<std::pair<double, double>>>& series,
               const std::vector<std::string>& names, bool log_y) {
  double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
  auto fy = [&](double v) { return log_y ? std::log10(std::max(v, 1e-30)) : v; };
  for (const auto& [name, pts] : series)
    for (const auto& [x, y] : pts) {
      if (log_y && y <= 0) continue;
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
      ymin = std::min(ymin, fy(y));
      ymax = std::max(ymax, fy(y));
    }
  svg << "<text x='" << x0 + w / 2 << "' y='" << y0 - 8 << "' text-anchor='middle' font-size='13'>"
      << title << "</text>\n";
  svg << "<rect x='" << x0 << "' y='" << y0 << "' width='" << w << "' height='" << h
      << "' fill='none' stroke='#444'/>\n";
  if (xmin > xmax) {
    svg << "<text x='" << x0 + w / 2 << "' y='" << y0 + h / 2 << "' text-anchor='middle' font-size='11'>"
        << (log_y ? "no non-zero values" : "no data") << "</text>\n";
    return;
  }
  if (xmax == xmin) xmax = xmin + 1;
  if (ymax - ymin < 1e-12) {
    ymin -= log_y ? 0.5 : 0.001;
    ymax += log_y ? 0.5 : 0.001;
  }
  auto px = [&](double x) { return x0 + (x - xmin) / (xmax - xmin) * w; };
  auto py = [&](double y) { return y0 + h - (fy(y) - ymin) / (ymax - ymin) * h; };
  for (int i = 0; i <= 4; i++) {  // y ticks
    const double v = ymin + (ymax - ymin) * i / 4;
    const double yy = y0 + h - h * i / 4;
    svg << "<text x='" << x0 - 4 << "' y='" << yy + 4 << "' text-anchor='end' font-size='10'>"
        << num("%.2g", log_y ? std::pow(10.0, v) : v) << "</text>\n";
  }
  svg << "<text x='" << x0 << "' y='" << y0 + h + 14 << "' font-size='10'>step " << num("%.0f", xmin)
      << "</text><text x='" << x0 + w << "' y='" << y0 + h + 14 << "' text-anchor='end' font-size='10'>"
      << num("%.0f", xmax) << "</text>\n";
  for (size_t k = 0; k < names.size(); k++) {
    auto it = series.find(names[k]);
    if (it == series.end()) continue;
    svg << "<polyline fill='none' stroke-width='1.5' stroke='" << kColors[k % 10] << "' points='";
    for (const auto& [x, y] : it->second)
      if (!log_y || y > 0) svg << num("%.1f", px(x)) << "," << num("%.1f", py(y)) << " ";
    svg << "'/>\n";
  }
}

}  // namespace

void render_numerics_report(const std::string& jsonl_path, const std::string& svg_path,
                            std::ostream& out) {
  std::ifstream in(jsonl_path);
  MESHLM_CHECK(bool(in), jsonl_path + ": cannot read (train with --numerics-report N to write it)");
  std::vector<nlohmann::json> rows;
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.empty()) continue;
    try {
      rows.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
      throw Error(jsonl_path + ":" + std::to_string(lineno) + ": not a JSON line");
    }
  }
  std::vector<nlohmann::json> events;  // the stability rules' lines, listed at the end
  for (auto it = rows.begin(); it != rows.end();)
    if (it->contains("event")) {
      events.push_back(*it);
      it = rows.erase(it);
    } else {
      ++it;
    }
  auto list_events = [&] {
    out << "instability events: " << events.size() << "\n";
    for (const auto& e : events)
      out << "  step " << e.at("step").get<int64_t>() << ": " << e.value("what", e.value("event", "")) << " -> "
          << e.value("done", "") << "\n";
  };
  if (rows.empty() && !events.empty()) return list_events();
  MESHLM_CHECK(!rows.empty(), jsonl_path + ": no records");
  const int64_t last = rows.back().at("step").get<int64_t>();
  std::vector<std::string> layers;
  for (const auto& r : rows) {
    const std::string l = r.at("layer").get<std::string>();
    if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
  }
  out << "numerics at step " << last << " (format " << rows.back().value("format", "?")
      << ", loss scale " << num("%g", rows.back().value("loss_scale", 1.0)) << ")\n";
  out << "  fractions of values: zero | underflow (non-zero -> 0) | subnormal | overflow (inf/NaN)\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-10s %-12s %11s %9s %10s %10s %9s\n", "layer", "kind", "amax",
                "zero", "underflow", "subnormal", "overflow");
  out << buf;
  struct Worst { double under = 0, sub = 0, over = 0; int64_t under_step = 0, over_step = 0; };
  std::map<std::string, Worst> worst;  // per kind, over the whole run
  for (const auto& r : rows) {
    const std::string kind = r.at("kind").get<std::string>();
    Worst& w = worst[kind];
    const double u = r.value("underflow", 0.0), s = r.value("subnormal", 0.0), o = r.value("overflow", 0.0);
    if (u > w.under) { w.under = u; w.under_step = r.at("step").get<int64_t>(); }
    w.sub = std::max(w.sub, s);
    if (o > w.over) { w.over = o; w.over_step = r.at("step").get<int64_t>(); }
    if (r.at("step").get<int64_t>() != last) continue;
    std::snprintf(buf, sizeof buf, "%-10s %-12s %11.4g %9s %10s %10s %9s\n",
                  r.at("layer").get<std::string>().c_str(), kind.c_str(), r.value("amax", 0.0),
                  pct(r.value("zero", 0.0)).c_str(), pct(u).c_str(), pct(s).c_str(), pct(o).c_str());
    out << buf;
  }
  out << "worst over the run:\n";
  for (const auto& [kind, w] : worst)
    out << "  " << kind << ": underflow " << pct(w.under)
        << (w.under > 0 ? " (step " + std::to_string(w.under_step) + ")" : "") << ", subnormal "
        << pct(w.sub) << ", overflow " << pct(w.over) << (w.over > 0 ? " (step " + std::to_string(w.over_step) + ")" : "")
        << "\n";

  // The plot: amax (log scale) and underflow + subnormal fraction, per layer, for each kind.
  const std::vector<std::string> kinds = {"weights", "activations", "grads"};
  std::ostringstream svg;
  const double W = 1260, H = 760, pw = 340, ph = 230;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
      << "' font-family='sans-serif'>\n<rect width='100%' height='100%' fill='white'/>\n";
  svg << "<text x='" << W / 2 << "' y='24' text-anchor='middle' font-size='16'>meshlm numerics report: "
      << jsonl_path << " (format " << rows.back().value("format", "?") << ")</text>\n";
  for (size_t k = 0; k < kinds.size(); k++) {
    std::map<std::string, std::vector<std::pair<double, double>>> amax, lost;
    for (const auto& r : rows) {
      if (r.at("kind").get<std::string>() != kinds[k]) continue;
      const std::string l = r.at("layer").get<std::string>();
      const double step = double(r.at("step").get<int64_t>());
      amax[l].push_back({step, r.value("amax", 0.0)});
      lost[l].push_back({step, r.value("underflow", 0.0) + r.value("subnormal", 0.0)});
    }
    const double x0 = 80 + double(k) * (pw + 70);
    svg_panel(svg, x0, 60, pw, ph, kinds[k] + ": amax", amax, layers, true);
    svg_panel(svg, x0, 360, pw, ph, kinds[k] + ": fraction underflow + subnormal", lost, layers, false);
  }
  for (size_t i = 0; i < layers.size(); i++) {
    const double lx = 80 + double(i % 8) * 140, ly = 640 + double(i / 8) * 20;
    svg << "<rect x='" << lx << "' y='" << ly - 9 << "' width='12' height='10' fill='" << kColors[i % 10]
        << "'/><text x='" << lx + 16 << "' y='" << ly << "' font-size='12'>" << layers[i] << "</text>\n";
  }
  svg << "</svg>\n";
  if (!events.empty()) list_events();
  std::ofstream f(svg_path);
  MESHLM_CHECK(bool(f), svg_path + ": cannot write");
  f << svg.str();
  out << "plot written to " << svg_path << "\n";
}

}  // namespace meshlm
