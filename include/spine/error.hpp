// The one exception type of the library: a message plus the context it was thrown in,
// and the exit status that main() maps it to.
#pragma once
#include <stdexcept>
#include <string>

namespace spine {

// Documented process exit statuses, shared by every executable.
enum class ExitStatus : int {
  kOk = 0,             // everything requested was done
  kUsage = 1,          // bad command line (unknown option, invalid value)
  kInput = 2,          // the input could not be used (missing, unreadable, wrong kind)
  kSomeFailed = 3,     // a batch ran but at least one study failed
  kInternal = 4,       // a bug or an unexpected failure
  kInterrupted = 5,    // SIGINT / SIGTERM: finished studies kept, the rest not run
};

enum class ErrorKind { kInput, kUsage, kModel, kInternal };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  // Prefixes context, giving "while reading a.nii: <original>".
  Error with_context(const std::string& context) const {
    return Error(kind_, context + ": " + what());
  }
  ErrorKind kind() const { return kind_; }
  ExitStatus exit_status() const {
    switch (kind_) {
      case ErrorKind::kUsage: return ExitStatus::kUsage;
      case ErrorKind::kInput:
      case ErrorKind::kModel: return ExitStatus::kInput;
      default: return ExitStatus::kInternal;
    }
  }

 private:
  ErrorKind kind_;
};

inline Error input_error(const std::string& m) { return Error(ErrorKind::kInput, m); }
inline Error usage_error(const std::string& m) { return Error(ErrorKind::kUsage, m); }
inline Error model_error(const std::string& m) { return Error(ErrorKind::kModel, m); }
inline Error internal_error(const std::string& m) { return Error(ErrorKind::kInternal, m); }

}  // namespace spine
