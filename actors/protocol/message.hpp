#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <optional>
#include <variant>
#include <vector>

#include <msgpack.hpp>

#include "core/limits.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/msgpack_writer.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor::protocol {

using core::limits;  // the decode limits live in core (values use them too)

/// Protocol version spoken by this host (docs/protocol.md).
inline constexpr int version = 1;

enum class kind : std::uint8_t { request = 0, response = 1, notification = 2 };

/// One decoded frame body `[kind, id, op, payload]`. `payload` lives in `zone`.
struct message {
  protocol::kind kind = kind::notification;
  std::uint64_t id = 0;
  std::string op;
  msgpack::object payload;
  std::shared_ptr<msgpack::zone> zone;
  std::shared_ptr<const char[]> buffer;  ///< large frames: strings and binaries point in here
  /// A reply whose bytes are in shared memory (io::shared_area::resolve): their range.
  std::shared_ptr<const void> lease;
  bool shared = false;  ///< the reply's bytes came by shared memory (leased or copied)

  /// What values taken from this message must keep alive (zone, buffer and lease when set).
  std::shared_ptr<const void> owner() const;
};

/// Whether `body` starts as the response to request `id` (`[1, id, ...]`: a 4-array, kind 1,
/// then `id` as any msgpack uint), without decoding it; false for anything else, malformed
/// bodies included (the decoder reports those).
inline bool is_response_to(std::string_view body, std::uint64_t id) noexcept {
  auto b = [&](std::size_t i) { return static_cast<std::uint8_t>(body[i]); };
  if (body.size() < 3 || b(0) != 0x94 || b(1) != 0x01)
    return false;
  std::uint8_t h = b(2);
  if (h < 0x80)
    return h == id;
  std::size_t n = h == 0xcc ? 1 : h == 0xcd ? 2 : h == 0xce ? 4 : h == 0xcf ? 8 : 0;
  if (n == 0 || body.size() < 3 + n)
    return false;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i)
    v = (v << 8) | b(3 + i);
  return v == id;
}

/// Decodes one frame body after check_structure; returns a description on any violation.
/// With `buffer` (the large frame's own memory, holding `body`) strings and binaries are
/// referenced in place instead of copied.
std::variant<message, std::string> decode(std::string_view body, const limits& lim,
                                          std::shared_ptr<const char[]> buffer = nullptr);

/// Ext type 6: bytes in the shared memory of the frame's direction, as (offset, length).
inline constexpr std::int8_t ext_shared_bytes = 6;
/// Ext type 7: a numpy array (pyvisor/ndarray.hpp).
inline constexpr std::int8_t ext_ndarray = 7;
/// Ext type 8: an ext 7 payload in the shared memory of the frame's direction, as (offset,
/// length); the byte before it is the type byte 7, so it reads as an ext 7 in place.
inline constexpr std::int8_t ext_shared_ndarray = 8;
/// Their encoding: fixext 16 (0xd8, the type), then offset and length as big-endian u64.
inline constexpr std::size_t shared_ref_size = 18;

/// Writes the ext 6 (or 8) reference (offset, length) at `out` (shared_ref_size bytes).
void put_shared_ref(char* out, std::uint64_t offset, std::uint64_t length,
                    std::int8_t type = ext_shared_bytes) noexcept;

/// Whether `o` is an ext 6 or 8 reference; if so sets `offset` and `length`.
bool get_shared_ref(const msgpack::object& o, std::uint64_t& offset, std::uint64_t& length) noexcept;

/// An argument whose bytes may travel in shared memory: the frame holds an ext 6 (or 8)
/// reference at `at` (its offset still 0); inline, the argument is `head` (a bin's header, or
/// an ext 7's header and type byte), `prefix` (an ext 7 payload's start: the ndarray header)
/// then the `size` bytes at `data` (at least the threshold), which `keep` keeps alive: the
/// argument's encoding, or the caller's bytes (arg::external). The shared memory gets
/// `prefix` and the bytes (the payload).
struct shared_slot {
  std::size_t at = 0;
  std::string head;
  std::string prefix;
  const char* data = nullptr;
  std::size_t size = 0;
  std::shared_ptr<const void> keep;
  bool ndarray = false;  ///< an ext 7, referenced as ext 8, rather than a bin (ext 6)
};

/// A request frame on its way: its bytes, and the arguments that may go by shared memory.
struct frame_out {
  std::string bytes;               ///< length prefix + body, with a reference in every slot
  std::vector<shared_slot> slots;  ///< empty: `bytes` is the whole frame

  frame_out() = default;
  frame_out(std::string b) : bytes(std::move(b)) {}  // NOLINT: a frame without slots
  /// The body's size as the pipe path sends it (every slot's bin inline).
  std::size_t body_size() const noexcept;
  /// The frame with every slot's bin inline, as the pipe path sends it.
  std::string inline_frame() &&;
};

/// Builds a frame (length prefix + body) in one string; msgpack-cxx packs straight into it.
class frame_builder {
public:
  /// `expected` bytes are reserved up front (large arguments are then copied exactly once).
  explicit frame_builder(std::size_t expected = 64) {
    if (expected >= detail::large_bytes)
      detail::reserve_large(buf_, expected + 4);
    else
      buf_.reserve(expected + 4);
    buf_.resize(4);
  }
  frame_builder(const frame_builder&) = delete;
  frame_builder& operator=(const frame_builder&) = delete;
  msgpack::packer<detail::msgpack_writer>& packer() noexcept { return pk_; }
  /// Appends bytes that already hold one msgpack value.
  void raw(const std::string& bytes) { buf_.append(bytes); }
  /// Bins of at least `n` bytes in arguments become slots (0: never).
  void slots_from(std::size_t n) noexcept { slot_min_ = n; }
  /// Appends an argument: its bytes, or a slot when it is a large enough bin.
  void argument(const arg& a);
  /// Size of the body written so far.
  std::size_t body_size() const noexcept { return buf_.size() - 4; }
  /// Patches the length and hands out the frame.
  std::string finish() &&;
  /// The same with the slots.
  frame_out finish_out() &&;

private:
  std::size_t slot_min_ = 0;
  std::vector<shared_slot> slots_;
  std::string buf_;
  detail::msgpack_writer w_{&buf_};
  msgpack::packer<detail::msgpack_writer> pk_{w_};
};

/// Optional keys of eval/call payloads; each is sent only when set.
struct request_extras {
  std::uint64_t env = 0;            ///< run in this env (0 = throwaway copy of root)
  bool capture = false;             ///< return stdout/stderr text with the reply
  bool bytes_as_bytearray = false;  ///< host binaries arrive as bytearray
  bool bytes_as_memoryview = false;  ///< host binaries arrive as memoryview (not with bytearray)
  /// Arguments that are bins of at least this many bytes become slots (0: none).
  std::size_t slots_from = 0;
};

/// One `from` source of make_env.
struct env_spec {
  std::uint64_t env = 0;
  std::optional<std::vector<std::string>> only;
  std::optional<std::vector<std::string>> except;
};

/// A decoded response: the result plus the output captured for it, if asked for.
struct reply {
  expected<value> result;
  std::optional<std::string> out;
  std::optional<std::string> err;
};

/// `[0, id, op, {"code", "vars", "file", "line", extras...}]` for the ops `init` and `eval`.
std::string encode_code_request(std::uint64_t id, std::string_view op, std::string_view code,
                                const vars& v, std::string_view file, int line,
                                const request_extras& x = {});

/// The same with its slots (x.slots_from).
frame_out encode_code_request_out(std::uint64_t id, std::string_view op, std::string_view code,
                                  const vars& v, std::string_view file, int line,
                                  const request_extras& x);

/// `[0, id, "call", {"name", "args", "kwargs", extras...}]`.
frame_out encode_call_out(std::uint64_t id, std::string_view name, const std::vector<arg>& args,
                          const vars& kwargs, const request_extras& x);
std::string encode_call(std::uint64_t id, std::string_view name, const std::vector<arg>& args,
                        const vars& kwargs, const request_extras& x = {});

/// `[0, id, "make_env", {"env", "from", "vars"}]`.
std::string encode_make_env(std::uint64_t id, std::uint64_t env, const std::vector<env_spec>& from,
                            const vars& v);

/// `[2, 0, "drop_env", {"env"}]`.
std::string encode_drop_env(std::uint64_t env);

/// `[0, id, op, {}]`.
std::string encode_empty_request(std::uint64_t id, std::string_view op);

/// `[2, 0, "cancel", {"id": id}]`.
std::string encode_cancel(std::uint64_t id);

/// `[2, 0, "shutdown", {}]`.
std::string encode_shutdown();

/// `[2, 0, "shm_free", [offset, ...]]`: the runner's shared-memory ranges the host let go of.
std::string encode_shm_free(const std::vector<std::uint64_t>& offsets);

/// `[1, id, op, {"ok": v}]`: the host's answer to a runner request (host_call).
std::string encode_ok_response(std::uint64_t id, std::string_view op, const arg& v);

/// `[1, id, op, {"error": {"code", "type", "message", "traceback": []}}]`.
std::string encode_error_response(std::uint64_t id, std::string_view op, std::string_view code,
                                  std::string_view type, std::string_view message);

/// Turns a response payload (`{"ok": v}` or `{"error": {...}}`, plus "stdout"/"stderr" when
/// captured) into a reply.
reply parse_response(const message& m);

/// Looks up a key of a msgpack map by string; nullptr when absent or not a map.
const msgpack::object* map_get(const msgpack::object& map, std::string_view key) noexcept;

/// A string field of a map, or `fallback`.
std::string map_string(const msgpack::object& map, std::string_view key,
                       std::string fallback = {});

} // namespace pyvisor::protocol
