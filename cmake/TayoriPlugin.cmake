# tayori_add_plugin(NAME SOURCES...): a channel plugin as the gateway loads it: a MODULE library named
# NAME.so (no "lib" prefix: `plugin: NAME` in the YAML finds it in a plugin_dir) that exports exactly one
# symbol, tayori_plugin_entry. Hidden visibility is not enough: libstdc++'s template instantiations and
# GNU-unique symbols would still be exported, bind across plugins despite RTLD_LOCAL and keep the library
# from ever unloading, so a linker version script hides everything else.
#
# The same file serves the gateway's own plugins (the top-level CMakeLists.txt includes it) and plugins
# built out of tree (find_package(Tayori) includes it), so both are built alike. In the gateway's tree the
# library goes to TAYORI_PLUGIN_OUTPUT_DIR; out of tree, to the usual output folder.
include_guard(GLOBAL)

set(TAYORI_PLUGIN_EXPORTS ${CMAKE_BINARY_DIR}/tayori_plugin.map)
file(WRITE ${TAYORI_PLUGIN_EXPORTS} "{\n  global: tayori_plugin_entry;\n  local: *;\n};\n")

function(tayori_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE Tayori::plugin_sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX "" OUTPUT_NAME ${name}
    C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  if(TAYORI_PLUGIN_OUTPUT_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${TAYORI_PLUGIN_OUTPUT_DIR})
  endif()
  target_link_options(${name} PRIVATE "LINKER:--version-script=${TAYORI_PLUGIN_EXPORTS}")
  set_property(GLOBAL APPEND PROPERTY TAYORI_PLUGIN_TARGETS ${name})
endfunction()
