# Included by ctest after the gtest discovery files (tests/CMakeLists.txt appends it last).
# Tests that rank two wall-clock timings against each other run alone: with `ctest -j2` a
# neighbour on the other core skews one side's timings and not the other's.
foreach(_test IN LISTS test_search_TESTS)
  if(_test STREQUAL "TorchCpuDevice.RanksSampledCnnsLikeTheHostMeasurementSlow")
    set_tests_properties(${_test} PROPERTIES RUN_SERIAL TRUE)
  endif()
endforeach()
