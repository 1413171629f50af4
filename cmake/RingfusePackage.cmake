# Installed package: headers, libringfuse, ringfuse-run and a CMake package config so that
# find_package(ringfuse) + target_link_libraries(app ringfuse::ringfuse) works elsewhere.
include(CMakePackageConfigHelpers)

install(TARGETS ringfuse EXPORT ringfuseTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/comm/include/ringfuse
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT ringfuseTargets NAMESPACE ringfuse::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ringfuse)

configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/ringfuseConfig.cmake.in
  ${CMAKE_BINARY_DIR}/ringfuseConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ringfuse)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/ringfuseConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/ringfuseConfig.cmake ${CMAKE_BINARY_DIR}/ringfuseConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ringfuse)
