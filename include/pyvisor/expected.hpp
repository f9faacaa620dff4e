#pragma once

#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "pyvisor/error.hpp"

namespace pyvisor {

/// Thrown when an expected is used for what it does not hold: value(), `*` or `->` of one that
/// holds an error (error() then gives that error), or error() of one that holds a value (code
/// errc::none). Misuse is thus defined in every build type, never undefined behaviour, and the
/// exception still carries what went wrong. what(): "bad expected access: <error>".
class bad_expected_access : public std::exception {
public:
  explicit bad_expected_access(pyvisor::error err)
    : err_(std::move(err)), what_("bad expected access: " + err_.to_string()) {}
  const pyvisor::error& error() const noexcept { return err_; }
  const char* what() const noexcept override { return what_.c_str(); }

private:
  pyvisor::error err_;
  std::string what_;
};

namespace detail {

[[noreturn]] inline void throw_holds_value() {
  throw bad_expected_access(make_error(errc::none, "error() of an expected that holds a value"));
}

} // namespace detail

/// A value of T or a pyvisor::error. pyvisor's calls report failures this way and do not throw;
/// check has_value() (or `if (r)`) before using the value. Using the value of an expected that
/// holds an error throws bad_expected_access carrying that error (and error() of one that holds
/// a value throws too), so a forgotten check fails loudly instead of reading garbage.
template <class T>
class [[nodiscard]] expected {
public:
  expected(T value) : data_(std::in_place_index<0>, std::move(value)) {}
  expected(pyvisor::error err) : data_(std::in_place_index<1>, std::move(err)) {}

  bool has_value() const noexcept { return data_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  /// The value; throws bad_expected_access (carrying the error) when there is none.
  T& value() & { check_value(); return std::get<0>(data_); }
  const T& value() const& { check_value(); return std::get<0>(data_); }
  T&& value() && { check_value(); return std::get<0>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  /// The error; throws bad_expected_access (code none) when a value is held.
  pyvisor::error& error() & { check_error(); return std::get<1>(data_); }
  const pyvisor::error& error() const& { check_error(); return std::get<1>(data_); }
  pyvisor::error&& error() && { check_error(); return std::get<1>(std::move(data_)); }

private:
  void check_value() const {
    if (!has_value())
      throw bad_expected_access(std::get<1>(data_));
  }
  void check_error() const {
    if (has_value())
      detail::throw_holds_value();
  }
  std::variant<T, pyvisor::error> data_;
};

/// Success without a value, or an error. Same rules as expected<T>.
template <>
class [[nodiscard]] expected<void> {
public:
  expected() = default;
  expected(pyvisor::error err) : err_(std::move(err)), failed_(true) {}

  bool has_value() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return has_value(); }
  /// Throws bad_expected_access (carrying the error) on failure; does nothing on success.
  void value() const {
    if (failed_)
      throw bad_expected_access(err_);
  }
  /// The error; throws bad_expected_access (code none) on success.
  pyvisor::error& error() & {
    if (!failed_)
      detail::throw_holds_value();
    return err_;
  }
  const pyvisor::error& error() const& {
    if (!failed_)
      detail::throw_holds_value();
    return err_;
  }

private:
  pyvisor::error err_;
  bool failed_ = false;
};

} // namespace pyvisor
