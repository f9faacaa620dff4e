# Writes OUTPUT: a C++ file defining pyvisor::gateway::status_page_html() as the text of INPUT
# (run at build time, so editing the page rebuilds it). The text goes in as a raw string with a
# delimiter the page cannot end early.
file(READ "${INPUT}" text)
string(FIND "${text}" ")pyvisor_page\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter")
endif()
file(WRITE "${OUTPUT}.tmp" "// Generated from ${INPUT} by embed_text.cmake: do not edit.\n#include \"gateway/status_page.hpp\"\n\nnamespace pyvisor::gateway {\n\nstd::string_view status_page_html() noexcept {\n  static constexpr std::string_view page = R\"pyvisor_page(${text})pyvisor_page\";\n  return page;\n}\n\n} // namespace pyvisor::gateway\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
