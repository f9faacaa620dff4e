#pragma once

/// Host functions: C++ code that Python calls with `await pyvisor.call("name", *args)`.
/// Only exposed names are callable (anything else raises pyvisor.HostError "not exposed").
///
///     rt.expose("add", [](int a, int b) { return a + b; });          // typed: args converted
///     rt.expose("log", [](const pyvisor::host_call& c) -> pyvisor::expected<pyvisor::arg> {
///       std::cout << c.args.size() << " args\n";                      // raw: any arguments
///       return pyvisor::arg{msgpack::type::nil_t{}};
///     });
///
/// Host functions run on a CAF worker thread of the runtime, one call at a time per
/// interpreter; they must not block for long (use an exposed actor for slow work). A function
/// that throws, or whose arguments do not convert, answers Python with pyvisor.HostError
/// naming the function and the error.

#include <functional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "pyvisor/expected.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor {

/// One call from Python.
struct host_call {
  std::string_view name;           ///< the exposed name
  const std::vector<value>& args;  ///< positional arguments
  std::string_view label;          ///< the calling interpreter's label
  int pid = 0;                     ///< the calling interpreter's pid
};

/// The raw form every host function is stored as.
using host_function = std::function<expected<arg>(const host_call&)>;

namespace detail {

template <class T>
struct callable_traits : callable_traits<decltype(&T::operator())> {};
template <class R, class... As>
struct callable_traits<R (*)(As...)> {
  using result = R;
  using args = std::tuple<std::decay_t<As>...>;
};
template <class C, class R, class... As>
struct callable_traits<R (C::*)(As...) const> : callable_traits<R (*)(As...)> {};
template <class C, class R, class... As>
struct callable_traits<R (C::*)(As...)> : callable_traits<R (*)(As...)> {};

template <class T>
struct is_expected : std::false_type {};
template <class T>
struct is_expected<expected<T>> : std::true_type {};

template <class F, class Args, std::size_t... I>
auto invoke_converted(F& f, const std::vector<value>& v, std::index_sequence<I...>) {
  return f(v[I].as<std::tuple_element_t<I, Args>>()...);
}

/// Wraps a typed callable: converts the arguments, calls, packs the result.
template <class F>
host_function make_host_function(F f) {
  if constexpr (std::is_invocable_v<F&, const host_call&>) {
    return host_function{std::move(f)};
  } else {
    using traits = callable_traits<std::decay_t<F>>;
    using args_t = typename traits::args;
    using result_t = typename traits::result;
    constexpr auto n = std::tuple_size_v<args_t>;
    return [f = std::move(f)](const host_call& c) mutable -> expected<arg> {
      if (c.args.size() != n)
        return make_error(errc::invalid_argument,
                          std::string{c.name} + "() takes " + std::to_string(n) +
                            " arguments, " + std::to_string(c.args.size()) + " given");
      if constexpr (std::is_void_v<result_t>) {
        invoke_converted<F, args_t>(f, c.args, std::make_index_sequence<n>{});
        return arg{msgpack::type::nil_t{}};
      } else if constexpr (is_expected<result_t>::value) {
        auto r = invoke_converted<F, args_t>(f, c.args, std::make_index_sequence<n>{});
        if (!r)
          return std::move(r).error();
        return arg{*r};
      } else {
        return arg{invoke_converted<F, args_t>(f, c.args, std::make_index_sequence<n>{})};
      }
    };
  }
}

} // namespace detail
} // namespace pyvisor
