// A one-line progress bar on stderr for model loading. It draws only when stderr is a terminal,
// redraws only when the shown percentage changes, and erases itself when done, so logs, pipes and
// redirected stderr stay clean.
#ifndef KESTREL_TOOLS_CLI_PROGRESS_BAR_H_
#define KESTREL_TOOLS_CLI_PROGRESS_BAR_H_

#include <string>

namespace kestrel::cli {

class ProgressBar {
 public:
  // `label` is shown before the bar, e.g. "loading stories260K.gguf".
  explicit ProgressBar(std::string label);
  ~ProgressBar();  // Finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  bool enabled() const { return enabled_; }

  // progress in [0, 1]; values outside are clamped.
  void Update(float progress);
  // Erases the bar's line (once).
  void Finish();

  // Erases the line of whichever bar is drawn now, so that a log line can be written on stderr;
  // the bar is redrawn at its next Update. Safe to call from any thread.
  static void ClearForLog();

 private:
  void Draw(int percent);

  std::string label_;
  bool enabled_ = false;
  bool finished_ = false;
  int percent_ = -1;
};

}  // namespace kestrel::cli

#endif  // KESTREL_TOOLS_CLI_PROGRESS_BAR_H_
