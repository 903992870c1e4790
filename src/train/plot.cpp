#include "train/plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"

namespace meshlm {

namespace fs = std::filesystem;

RunSeries read_run_series(const std::string& run_dir, const std::string& name) {
  const fs::path metrics = fs::path(run_dir) / "metrics.jsonl";
  std::ifstream in(metrics);
  MESHLM_CHECK(in, metrics.string() + ": cannot read (not a run directory?)");
  RunSeries s;
  s.name = name.empty() ? fs::path(run_dir).lexically_normal().filename().string() : name;
  if (s.name.empty() || s.name == ".") s.name = fs::absolute(run_dir).lexically_normal().parent_path().filename().string();
  auto num = [](const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_number() ? j[key].get<double>() : std::numeric_limits<double>::quiet_NaN();
  };
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      continue;  // a torn last line
    }
    if (!j.is_object() || !j.contains("step")) continue;
    const double step = num(j, "step");
    if (j.contains("val_loss")) {
      s.val_step.push_back(step);
      s.val_loss.push_back(num(j, "val_loss"));
    }
    if (!j.contains("loss")) continue;
    s.step.push_back(step);
    s.loss.push_back(num(j, "loss"));
    s.lr.push_back(num(j, "lr"));
    s.grad_norm.push_back(num(j, "grad_norm"));
    s.tokens_per_s.push_back(num(j, "tokens_per_s"));
  }
  return s;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 text.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t') o += c;
    }
  }
  return o;
}

namespace {

// ---- the picture as shapes, drawn by both writers ----

struct Rgb {
  double r, g, b;
};
struct Line {
  std::vector<std::pair<double, double>> pts;
  Rgb color;
  double width;
  bool dashed, markers;
};
struct Text {
  double x, y;
  std::string text;
  double size;
  int anchor;  // -1 start, 0 middle, 1 end
  bool vertical;
};
struct Scene {
  double w, h;
  std::vector<Line> lines;
  std::vector<Text> texts;
};

const Rgb kPalette[] = {{0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}, {0.17, 0.63, 0.17}, {1.00, 0.50, 0.05},
                        {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}};
const Rgb kAxis{0.2, 0.2, 0.2}, kGrid{0.88, 0.88, 0.88};

// 1, 2 or 5 times a power of ten, about (hi - lo) / 5 apart.
std::vector<double> ticks(double lo, double hi) {
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

std::string label(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (a != 0 && (a < 1e-2 || a >= 1e5)) std::snprintf(buf, sizeof buf, "%.1e", v);
  else std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

struct Curve {
  const std::vector<double>* x;
  const std::vector<double>* y;
  Rgb color;
  bool dashed, markers;
};

// One panel: frame, grid, ticks, title, the curves (non-finite points break a line).
void panel(Scene& s, double x0, double y0, double w, double h, const std::string& title, const std::vector<Curve>& curves) {
  double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
  for (const Curve& c : curves)
    for (size_t i = 0; i < c.x->size(); i++)
      if (std::isfinite((*c.y)[i])) {
        xl = std::min(xl, (*c.x)[i]), xh = std::max(xh, (*c.x)[i]);
        yl = std::min(yl, (*c.y)[i]), yh = std::max(yh, (*c.y)[i]);
      }
  s.texts.push_back({x0 + w / 2, y0 - 10, title, 15, 0, false});
  if (!std::isfinite(xl)) {
    s.texts.push_back({x0 + w / 2, y0 + h / 2, "no data yet", 13, 0, false});
    return;
  }
  if (xh <= xl) xh = xl + 1;
  if (yh <= yl) yl -= 0.5 * std::max(1e-12, std::abs(yl)), yh += 0.5 * std::max(1e-12, std::abs(yh));
  const double pad = 0.05 * (yh - yl);
  yl -= pad, yh += pad;
  auto X = [&](double v) { return x0 + (v - xl) / (xh - xl) * w; };
  auto Y = [&](double v) { return y0 + h - (v - yl) / (yh - yl) * h; };
  for (double t : ticks(yl, yh)) {
    s.lines.push_back({{{x0, Y(t)}, {x0 + w, Y(t)}}, kGrid, 1, false, false});
    s.texts.push_back({x0 - 6, Y(t) + 4, label(t), 11, 1, false});
  }
  for (double t : ticks(xl, xh)) {
    s.lines.push_back({{{X(t), y0}, {X(t), y0 + h}}, kGrid, 1, false, false});
    s.texts.push_back({X(t), y0 + h + 16, label(t), 11, 0, false});
  }
  s.lines.push_back({{{x0, y0}, {x0 + w, y0}, {x0 + w, y0 + h}, {x0, y0 + h}, {x0, y0}}, kAxis, 1, false, false});
  s.texts.push_back({x0 + w / 2, y0 + h + 34, "step", 12, 0, false});
  for (const Curve& c : curves) {
    // A long run: the mean of each run of `stride` points (about 2000 drawn per curve), so the
    // files stay small and the curve reads as its trend; a non-finite point breaks the line.
    const size_t n = c.x->size(), stride = std::max<size_t>(1, n / 2000);
    Line line{{}, c.color, 1.6, c.dashed, c.markers};
    for (size_t i = 0; i < n; i += stride) {
      double sx = 0, sy = 0;
      size_t k = 0;
      bool finite = true;
      for (size_t j = i; j < std::min(n, i + stride); j++, k++) {
        finite = finite && std::isfinite((*c.y)[j]);
        sx += (*c.x)[j];
        sy += (*c.y)[j];
      }
      if (!finite) {
        if (!line.pts.empty()) s.lines.push_back(line);
        line.pts.clear();
        continue;
      }
      line.pts.emplace_back(X(sx / double(k)), Y(sy / double(k)));
    }
    if (!line.pts.empty()) s.lines.push_back(line);
  }
}

Scene draw(const std::vector<RunSeries>& runs, const std::string& title) {
  Scene s{1200, 820, {}, {}};
  s.texts.push_back({600, 30, title, 18, 0, false});
  const double pw = 480, ph = 260, xs[2] = {100, 680}, ys[2] = {90, 470};
  std::vector<Curve> loss, lr, norm, tps;
  for (size_t r = 0; r < runs.size(); r++) {
    const Rgb c = kPalette[r % (sizeof kPalette / sizeof kPalette[0])];
    loss.push_back({&runs[r].step, &runs[r].loss, c, false, false});
    loss.push_back({&runs[r].val_step, &runs[r].val_loss, c, true, true});
    lr.push_back({&runs[r].step, &runs[r].lr, c, false, false});
    norm.push_back({&runs[r].step, &runs[r].grad_norm, c, false, false});
    tps.push_back({&runs[r].step, &runs[r].tokens_per_s, c, false, false});
  }
  panel(s, xs[0], ys[0], pw, ph, "loss (solid: train, dashed with dots: val), nats/token", loss);
  panel(s, xs[1], ys[0], pw, ph, "learning rate", lr);
  panel(s, xs[0], ys[1], pw, ph, "gradient norm (before clipping)", norm);
  panel(s, xs[1], ys[1], pw, ph, "tokens/s", tps);
  // The legend, under the title.
  double lx = 100;
  for (size_t r = 0; r < runs.size(); r++) {
    const Rgb c = kPalette[r % (sizeof kPalette / sizeof kPalette[0])];
    s.lines.push_back({{{lx, 55}, {lx + 24, 55}}, c, 3, false, false});
    s.texts.push_back({lx + 30, 59, runs[r].name, 13, -1, false});
    lx += 40 + 8.0 * double(std::min<size_t>(runs[r].name.size(), 40));
  }
  return s;
}

std::string rgb_text(const Rgb& c) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "rgb(%d,%d,%d)", int(c.r * 255), int(c.g * 255), int(c.b * 255));
  return buf;
}

std::string to_svg(const Scene& s) {
  std::ostringstream o;
  o.precision(6);
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << s.w
    << "\" height=\"" << s.h << "\" viewBox=\"0 0 " << s.w << " " << s.h << "\" font-family=\"DejaVu Sans, sans-serif\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (const Line& l : s.lines) {
    o << "<polyline fill=\"none\" stroke=\"" << rgb_text(l.color) << "\" stroke-width=\"" << l.width << "\""
      << (l.dashed ? " stroke-dasharray=\"6,4\"" : "") << " points=\"";
    for (const auto& [x, y] : l.pts) o << x << "," << y << " ";
    o << "\"/>\n";
    if (l.markers)
      for (const auto& [x, y] : l.pts) o << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"3\" fill=\"" << rgb_text(l.color) << "\"/>\n";
  }
  for (const Text& t : s.texts)
    o << "<text x=\"" << t.x << "\" y=\"" << t.y << "\" font-size=\"" << t.size << "\" text-anchor=\""
      << (t.anchor < 0 ? "start" : t.anchor > 0 ? "end" : "middle") << "\">" << xml_escape(t.text) << "</text>\n";
  o << "</svg>\n";
  return o.str();
}

void to_png(const Scene& s, const std::string& path) {
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, int(s.w), int(s.h));
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  for (const Line& l : s.lines) {
    cairo_set_source_rgb(cr, l.color.r, l.color.g, l.color.b);
    cairo_set_line_width(cr, l.width);
    const double dash[2] = {6, 4};
    cairo_set_dash(cr, dash, l.dashed ? 2 : 0, 0);
    for (size_t i = 0; i < l.pts.size(); i++)
      (i ? cairo_line_to : cairo_move_to)(cr, l.pts[i].first, l.pts[i].second);
    cairo_stroke(cr);
    if (l.markers)
      for (const auto& [x, y] : l.pts) {
        cairo_arc(cr, x, y, 3, 0, 2 * M_PI);
        cairo_fill(cr);
      }
  }
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_source_rgb(cr, kAxis.r, kAxis.g, kAxis.b);
  for (const Text& t : s.texts) {
    cairo_set_font_size(cr, t.size);
    cairo_text_extents_t e;
    cairo_text_extents(cr, t.text.c_str(), &e);
    const double x = t.anchor < 0 ? t.x : t.anchor > 0 ? t.x - e.x_advance : t.x - e.x_advance / 2;
    cairo_move_to(cr, x, t.y);
    cairo_show_text(cr, t.text.c_str());
  }
  cairo_destroy(cr);
  const cairo_status_t st = cairo_surface_write_to_png(surface, path.c_str());
  cairo_surface_destroy(surface);
  MESHLM_CHECK(st == CAIRO_STATUS_SUCCESS, path + ": cannot write the PNG (" + cairo_status_to_string(st) + ")");
}

}  // namespace

void write_loss_plot(const std::vector<RunSeries>& runs, const std::string& title, const std::string& svg_path,
                     const std::string& png_path) {
  MESHLM_CHECK(!runs.empty(), "plot: no runs");
  const Scene s = draw(runs, title);
  if (!svg_path.empty()) write_file_atomic(svg_path, to_svg(s));
  if (!png_path.empty()) {
    const std::string tmp = png_path + ".tmp";
    to_png(s, tmp);
    fsync_path(tmp);
    fs::rename(tmp, png_path);
  }
}

}  // namespace meshlm
