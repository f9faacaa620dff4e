# JSON <-> pyvisor values (nlohmann/json), shared by the pyvisor program and the HTTP gateway.
set(PYVISOR_JSON_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/json_value.cpp
  ${CMAKE_CURRENT_LIST_DIR}/json_render.cpp)
