#include "progress_bar.h"

#include <unistd.h>

#include <cstdio>
#include <mutex>

namespace kestrel::cli {
namespace {

constexpr int kBarWidth = 30;

std::mutex g_mutex;                      // guards the fields below and stderr drawing
ProgressBar* g_active = nullptr;         // the bar currently on screen
bool g_line_dirty = false;               // something is drawn on the current stderr line

void EraseLineLocked() {
  if (g_line_dirty) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    g_line_dirty = false;
  }
}

}  // namespace

ProgressBar::ProgressBar(std::string label) : label_(std::move(label)) {
  enabled_ = isatty(STDERR_FILENO) == 1;
  if (enabled_) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_active = this;
  }
}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(float progress) {
  if (!enabled_ || finished_) return;
  if (!(progress >= 0.0f)) progress = 0.0f;  // also NaN
  if (progress > 1.0f) progress = 1.0f;
  int percent = static_cast<int>(progress * 100.0f);
  std::lock_guard<std::mutex> lock(g_mutex);
  if (percent == percent_ && g_line_dirty) return;
  percent_ = percent;
  Draw(percent);
}

void ProgressBar::Draw(int percent) {
  int filled = percent * kBarWidth / 100;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kBarWidth - filled), '.');
  std::fprintf(stderr, "\r%s [%s] %3d%%", label_.c_str(), bar.c_str(), percent);
  std::fflush(stderr);
  g_line_dirty = true;
}

void ProgressBar::Finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  std::lock_guard<std::mutex> lock(g_mutex);
  EraseLineLocked();
  if (g_active == this) g_active = nullptr;
}

void ProgressBar::ClearForLog() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_active != nullptr) EraseLineLocked();
}

}  // namespace kestrel::cli
