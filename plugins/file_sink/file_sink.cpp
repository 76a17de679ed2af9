// file_sink — writes each rendered delivery as one JSON line to a file. The demo's default channel, and a
// dry run for operators: point a channel at it and read exactly what would have been sent.
//
// It does its own (short, blocking) I/O, so it implements deliver() rather than build()/classify().
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <tayori/plugin.hpp>

namespace {

using tayori::sdk::Delivery;
using tayori::sdk::Outcome;

class FileSink {
 public:
  FileSink(const tayori::sdk::Host& host, const tayori::sdk::Settings& settings)
      : host_(host), path_(settings.get("path")), fsync_(settings.get_bool("fsync")) {
    // O_APPEND: each line lands whole at the end even if an operator tails or rotates the file. Read access
    // only to look at the last byte below.
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) throw tayori::sdk::Error("path: cannot open \"" + path_ + "\" for appending: " + std::strerror(errno));
    // A process killed inside write() may leave its last line cut short (Linux ends a write to a file between
    // pages when a fatal signal is pending); the next line then starts on a line of its own.
    struct stat st {};
    char last = '\n';
    if (::fstat(fd_, &st) == 0 && st.st_size > 0 && ::pread(fd_, &last, 1, st.st_size - 1) == 1) cut_short_ = last != '\n';
  }
  ~FileSink() {
    if (fd_ >= 0) ::close(fd_);
  }

  Outcome deliver(const Delivery& d) {
    nlohmann::json content = nlohmann::json::object();
    for (auto [key, value] : d.content_fields()) content[std::string(key)] = std::string(value);
    nlohmann::json line = {
        {"written_at_ms", host_.now_ms()},
        {"message_id", d.message_id()},
        {"delivery_id", d.delivery_id()},
        {"attempt", d.attempt()},
        {"channel", d.channel()},
        {"recipient_id", d.recipient_id()},
        {"contact", d.contact()},
        {"purpose", d.purpose_name()},
        {"category", d.category()},
        {"locale", d.locale()},
        {"content", content},
        {"metadata", nlohmann::json::parse(d.metadata_json(), nullptr, false)},
    };
    std::string text = line.dump() + "\n";
    std::lock_guard lock(mutex_);
    if (cut_short_) text.insert(0, "\n");
    ssize_t written = ::write(fd_, text.data(), text.size());
    if (written != static_cast<ssize_t>(text.size())) {
      cut_short_ = cut_short_ || written > 0;
      return Outcome::retry(std::string("file.write: ") + (written < 0 ? std::strerror(errno) : "short write"));
    }
    cut_short_ = false;
    if (fsync_ && ::fsync(fd_) != 0) return Outcome::retry(std::string("file.fsync: ") + std::strerror(errno));
    return Outcome::delivered(std::string(d.delivery_id()));
  }

 private:
  tayori::sdk::Host host_;
  std::string path_;
  bool fsync_;
  bool cut_short_ = false;  // the file's last line has no line end: the next write starts with one
  int fd_ = -1;
  std::mutex mutex_;
};

const tayori_setting_spec kSettings[] = {
    {"path", TAYORI_SETTING_PATH, 1, nullptr, "file to append one JSON line per delivery to"},
    {"fsync", TAYORI_SETTING_BOOL, 0, "false", "fsync after every line (durable, slower)"},
};

}  // namespace

TAYORI_PLUGIN(FileSink, "file_sink", "1.0.0", "writes each delivery as a JSON line to a file", "email", kSettings,
              sizeof kSettings / sizeof kSettings[0])
