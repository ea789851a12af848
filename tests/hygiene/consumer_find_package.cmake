# Installs the attn source tree into a fresh prefix, then configures, builds and runs
# tests/consumer against it with find_package(attn CONFIG REQUIRED). Run by CTest:
#   cmake -DATTN_SOURCE_DIR=... -DCONSUMER_DIR=... -DWORK_DIR=... -DGENERATOR=... -DCXX_COMPILER=...
#         -DBUILD_TYPE=Release -P consumer_find_package.cmake
foreach(var ATTN_SOURCE_DIR CONSUMER_DIR WORK_DIR GENERATOR BUILD_TYPE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "consumer_find_package.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run step)
  message(STATUS "[${step}] ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer_find_package: step '${step}' failed (${rc})")
  endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})  # every run starts from nothing
set(compiler_arg)
if(CXX_COMPILER)
  set(compiler_arg -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()

run(configure-attn ${CMAKE_COMMAND} -S ${ATTN_SOURCE_DIR} -B ${WORK_DIR}/attn-build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_INSTALL_PREFIX=${prefix} ${compiler_arg}
    -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_BENCHMARKS=OFF)
run(build-attn ${CMAKE_COMMAND} --build ${WORK_DIR}/attn-build)
run(install-attn ${CMAKE_COMMAND} --install ${WORK_DIR}/attn-build)
if(NOT EXISTS ${prefix}/include/attn/attn.hpp)
  message(FATAL_ERROR "consumer_find_package: install did not produce ${prefix}/include/attn/attn.hpp")
endif()
run(configure-consumer ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_PREFIX_PATH=${prefix} ${compiler_arg})
run(build-consumer ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(run-consumer ${WORK_DIR}/consumer-build/attn_consumer_app)
