# `cmake --install build [--prefix P]`: the gateway, its plugins and the plugin SDK.
#   bin/tayori, bin/tayori-sim                     the gateway and the provider simulator
#   lib/tayori/plugins/*.so                        the channel plugins (plugin_dirs in the YAML)
#   include/tayori/*.h, *.hpp                      the plugin SDK headers
#   lib/cmake/Tayori/                              find_package(Tayori): Tayori::plugin_sdk, Tayori::plugin_testing
#   lib/pkgconfig/tayori-plugin.pc                 pkg-config --cflags tayori-plugin
#   share/tayori/examples/*/                       example plugins, each a standalone project to copy
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS tayori tayori-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
get_property(_tayori_plugins GLOBAL PROPERTY TAYORI_PLUGIN_TARGETS)
install(TARGETS ${_tayori_plugins} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/tayori/plugins)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/tayori DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
# The examples as sources, to copy and build against this prefix (each one's README says how). A build folder
# someone made inside an example is not part of it.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples/ DESTINATION ${CMAKE_INSTALL_DATADIR}/tayori/examples
        PATTERN "build" EXCLUDE)

set(_tayori_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Tayori)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/TayoriConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/sdk/TayoriConfig.cmake
                              INSTALL_DESTINATION ${_tayori_cmake_dir} PATH_VARS CMAKE_INSTALL_INCLUDEDIR)
# A plugin built against one SDK loads in hosts of the same ABI major; the package version follows the
# project, and any 0.x asks for the same minor (SameMinorVersion) until the project reaches 1.0.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/sdk/TayoriConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${CMAKE_BINARY_DIR}/sdk/TayoriConfig.cmake ${CMAKE_BINARY_DIR}/sdk/TayoriConfigVersion.cmake
              ${CMAKE_SOURCE_DIR}/cmake/TayoriPlugin.cmake
        DESTINATION ${_tayori_cmake_dir})
file(RELATIVE_PATH TAYORI_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" TAYORI_PC_TO_PREFIX "${TAYORI_PC_TO_PREFIX}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/tayori-plugin.pc.in ${CMAKE_BINARY_DIR}/sdk/tayori-plugin.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/sdk/tayori-plugin.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
