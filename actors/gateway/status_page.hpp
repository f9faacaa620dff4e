#pragma once

// GET /: the self-contained status page (status_page.html, embedded at build time).

#include <string_view>

namespace pyvisor::gateway {

std::string_view status_page_html() noexcept;

} // namespace pyvisor::gateway
