#pragma once

#include <cassert>
#include <type_traits>
#include <utility>
#include <variant>

#include "pyvisor/error.hpp"

namespace pyvisor {

/// A value of T or a pyvisor::error. pyvisor never throws across its API: calls return this.
/// Accessing the value of an errored expected (or the error of a valued one) is a precondition
/// violation (asserted in debug builds).
template <class T>
class [[nodiscard]] expected {
public:
  expected(T value) : data_(std::in_place_index<0>, std::move(value)) {}
  expected(pyvisor::error err) : data_(std::in_place_index<1>, std::move(err)) {}

  bool has_value() const noexcept { return data_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { assert(has_value()); return std::get<0>(data_); }
  const T& value() const& { assert(has_value()); return std::get<0>(data_); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const pyvisor::error& error() const& { assert(!has_value()); return std::get<1>(data_); }
  pyvisor::error&& error() && { assert(!has_value()); return std::get<1>(std::move(data_)); }

private:
  std::variant<T, pyvisor::error> data_;
};

/// Success without a value, or an error.
template <>
class [[nodiscard]] expected<void> {
public:
  expected() = default;
  expected(pyvisor::error err) : err_(std::move(err)), failed_(true) {}

  bool has_value() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return has_value(); }
  const pyvisor::error& error() const& { assert(failed_); return err_; }

private:
  pyvisor::error err_;
  bool failed_ = false;
};

} // namespace pyvisor
