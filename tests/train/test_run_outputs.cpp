// What a run leaves for people besides metrics.jsonl: the loss-curve pictures (the PNG decodes
// with libpng, the SVG's text is escaped) and the TensorBoard event file (decoded here by an
// independent reader of TFRecord and the Event protocol buffer; scripts/interop_check.sh has
// TensorBoard itself read a run's).
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "support/fixtures.h"
#include "train/plot.h"
#include "train/tensorboard.h"

using namespace meshlm;
namespace fs = std::filesystem;

namespace {

RunSeries synthetic(const std::string& name, double scale) {
  RunSeries s;
  s.name = name;
  for (int i = 1; i <= 50; i++) {
    s.step.push_back(i);
    s.loss.push_back(scale * (5 - std::log(double(i))));
    s.lr.push_back(1e-3 * std::min(1.0, i / 10.0));
    s.grad_norm.push_back(i == 7 ? NAN : 2.0 / std::sqrt(double(i)));  // an overflowed step: a gap
    s.tokens_per_s.push_back(1e5 + 100 * i);
    if (i % 10 == 0) {
      s.val_step.push_back(i);
      s.val_loss.push_back(scale * (5.2 - std::log(double(i))));
    }
  }
  return s;
}

struct Png {
  uint32_t w = 0, h = 0;
  std::vector<uint8_t> rgb;  // (h, w, 3)
};

Png decode_png(const std::string& path) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  EXPECT_TRUE(png_image_begin_read_from_file(&img, path.c_str())) << img.message;
  img.format = PNG_FORMAT_RGB;
  Png p;
  p.w = img.width, p.h = img.height;
  p.rgb.resize(PNG_IMAGE_SIZE(img));
  EXPECT_TRUE(png_image_finish_read(&img, nullptr, p.rgb.data(), 0, nullptr)) << img.message;
  return p;
}

}  // namespace

TEST(LossPlot, PngDecodesWithTheCurvesAndSvgIsEscaped) {
  const fs::path d = meshlm::test::fresh_dir("plot");
  write_loss_plot({synthetic("fp32 <a&b>", 1.0), synthetic("bf16 \"q\"", 1.1)}, "runs & <friends>",
                  (d / "p.svg").string(), (d / "p.png").string());
  const Png png = decode_png((d / "p.png").string());
  ASSERT_EQ(png.w, 1200u);
  ASSERT_EQ(png.h, 820u);
  // Both runs' colours (the palette's first two) are drawn, and the background is white.
  std::map<std::string, int> seen;
  for (size_t i = 0; i < png.rgb.size(); i += 3) {
    const int r = png.rgb[i], g = png.rgb[i + 1], b = png.rgb[i + 2];
    auto near = [&](int R, int G, int B) { return std::abs(r - R) <= 2 && std::abs(g - G) <= 2 && std::abs(b - B) <= 2; };
    if (near(31, 120, 181)) seen["blue"]++;  // 255 x the palette's (0.12, 0.47, 0.71)
    if (near(214, 38, 41)) seen["red"]++;     // (0.84, 0.15, 0.16)
    if (r == 255 && g == 255 && b == 255) seen["white"]++;
  }
  EXPECT_GT(seen["blue"], 200);  // antialiased 1.6-pixel lines: a few hundred exact-colour pixels each
  EXPECT_GT(seen["red"], 200);
  EXPECT_GT(seen["white"], int(png.w * png.h / 2));
  const std::string svg = meshlm::test::slurp(d / "p.svg");
  EXPECT_NE(svg.find("fp32 &lt;a&amp;b&gt;"), std::string::npos);
  EXPECT_NE(svg.find("bf16 &quot;q&quot;"), std::string::npos);
  EXPECT_NE(svg.find("runs &amp; &lt;friends&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<a&b>"), std::string::npos);
  EXPECT_EQ(xml_escape("a\x01<"), "a&lt;");  // control characters are not XML text
}

TEST(LossPlot, ReadsARunsMetricsSkippingATornLine) {
  const fs::path d = meshlm::test::fresh_dir("plot_run");
  std::ofstream(d / "metrics.jsonl") << "{\"step\":1,\"loss\":5.0,\"lr\":0.001,\"grad_norm\":null,\"tokens_per_s\":10}\n"
                                     << "{\"step\":1,\"val_loss\":5.5}\n"
                                     << "{\"step\":2,\"loss\":4.0,\"lr\":0.001,\"grad_norm\":1.5,\"tokens_per_s\":12}\n"
                                     << "{\"step\":3,\"lo";
  const RunSeries s = read_run_series(d.string());
  ASSERT_EQ(s.step.size(), 2u);
  EXPECT_TRUE(std::isnan(s.grad_norm[0]));
  EXPECT_EQ(s.val_loss, std::vector<double>{5.5});
  EXPECT_EQ(s.name, d.filename().string());
}

// ---- TensorBoard ----

namespace {

uint64_t varint(const std::string& b, size_t& i) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    const uint8_t c = uint8_t(b.at(i++));
    v |= uint64_t(c & 0x7F) << shift;
    if (!(c & 0x80)) return v;
  }
}

struct Event {
  double wall_time = 0;
  int64_t step = -1;
  std::string file_version;
  std::map<std::string, float> scalars;
};

// The fields of Event and Summary.Value this writer uses; anything else fails the test.
Event parse_event(const std::string& b) {
  Event e;
  for (size_t i = 0; i < b.size();) {
    const uint64_t key = varint(b, i);
    if (key == (1 << 3 | 1)) {
      std::memcpy(&e.wall_time, b.data() + i, 8);
      i += 8;
    } else if (key == (2 << 3)) {
      e.step = int64_t(varint(b, i));
    } else if (key == (3 << 3 | 2)) {
      const uint64_t n = varint(b, i);
      e.file_version = b.substr(i, n);
      i += n;
    } else if (key == (5 << 3 | 2)) {
      const uint64_t n = varint(b, i);
      const std::string s = b.substr(i, n);
      i += n;
      for (size_t j = 0; j < s.size();) {
        EXPECT_EQ(varint(s, j), uint64_t(1 << 3 | 2));
        const uint64_t vn = varint(s, j);
        const std::string v = s.substr(j, vn);
        j += vn;
        size_t k = 0;
        EXPECT_EQ(varint(v, k), uint64_t(1 << 3 | 2));
        const uint64_t tn = varint(v, k);
        const std::string tag = v.substr(k, tn);
        k += tn;
        EXPECT_EQ(varint(v, k), uint64_t(2 << 3 | 5));
        float f;
        std::memcpy(&f, v.data() + k, 4);
        e.scalars[tag] = f;
      }
    } else {
      ADD_FAILURE() << "unexpected field key " << key;
      break;
    }
  }
  return e;
}

uint32_t u32(const std::string& b, size_t at) {
  uint32_t v;
  std::memcpy(&v, b.data() + at, 4);
  return v;
}

}  // namespace

TEST(TensorBoard, Crc32cIsCastagnolis) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
  EXPECT_EQ(crc32c("", 0), 0u);
}

TEST(TensorBoard, EventFileIsTfRecordsOfEvents) {
  const fs::path d = meshlm::test::fresh_dir("tb");
  std::string path;
  {
    TensorBoardWriter w((d / "tensorboard").string());
    w.scalars(1, {{"loss", 5.25}, {"lr", 1e-3}});
    w.scalars(2, {{"val_loss", 4.5}});
    path = w.path();
  }
  EXPECT_NE(fs::path(path).filename().string().find("events.out.tfevents."), std::string::npos);
  const std::string b = meshlm::test::slurp(path);
  std::vector<Event> events;
  for (size_t i = 0; i < b.size();) {
    ASSERT_LE(i + 12, b.size());
    uint64_t n;
    std::memcpy(&n, b.data() + i, 8);
    const uint32_t c = crc32c(b.data() + i, 8);
    EXPECT_EQ(u32(b, i + 8), ((c >> 15) | (c << 17)) + 0xa282ead8u) << "length CRC";
    const std::string data = b.substr(i + 12, n);
    const uint32_t dc = crc32c(data.data(), data.size());
    EXPECT_EQ(u32(b, i + 12 + n), ((dc >> 15) | (dc << 17)) + 0xa282ead8u) << "data CRC";
    events.push_back(parse_event(data));
    i += 12 + n + 4;
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_GT(events[0].wall_time, 1.6e9);
  EXPECT_EQ(events[1].step, 1);
  EXPECT_EQ(events[1].scalars.at("loss"), 5.25f);
  EXPECT_EQ(events[1].scalars.at("lr"), 1e-3f);
  EXPECT_EQ(events[2].step, 2);
  EXPECT_EQ(events[2].scalars.at("val_loss"), 4.5f);
}
