# Installs the attn source tree into a fresh prefix, then configures, builds and runs
# tests/consumer against it with find_package(attn CONFIG REQUIRED). Run by CTest:
#   cmake -DATTN_SOURCE_DIR=... -DCONSUMER_DIR=... -DWORK_DIR=... -DGENERATOR=... -DCXX_COMPILER=...
#         -DBUILD_TYPE=Release [-DCOMPILED=ON] -P consumer_find_package.cmake
# COMPILED=ON: the install includes the compiled mode's library and the consumer links
# attn::attn_compiled; otherwise attn is installed header-only (-DATTN_BUILD_COMPILED=OFF).
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

if(COMPILED)
  set(attn_mode -DATTN_BUILD_COMPILED=ON)
  set(consumer_target -DATTN_CONSUMER_TARGET=attn::attn_compiled)
else()
  set(attn_mode -DATTN_BUILD_COMPILED=OFF)
  set(consumer_target -DATTN_CONSUMER_TARGET=attn::attn)
endif()
run(configure-attn ${CMAKE_COMMAND} -S ${ATTN_SOURCE_DIR} -B ${WORK_DIR}/attn-build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_INSTALL_PREFIX=${prefix} ${compiler_arg} ${attn_mode}
    -DATTN_BUILD_TESTS=OFF -DATTN_BUILD_EXAMPLES=OFF -DATTN_BUILD_BENCHMARKS=OFF)
run(build-attn ${CMAKE_COMMAND} --build ${WORK_DIR}/attn-build)
run(install-attn ${CMAKE_COMMAND} --install ${WORK_DIR}/attn-build)
if(NOT EXISTS ${prefix}/include/attn/attn.hpp)
  message(FATAL_ERROR "consumer_find_package: install did not produce ${prefix}/include/attn/attn.hpp")
endif()
file(GLOB installed_library ${prefix}/lib*/libattn_compiled.a)
if(COMPILED AND NOT installed_library)
  message(FATAL_ERROR "consumer_find_package: install did not produce libattn_compiled.a under ${prefix}")
elseif(NOT COMPILED AND installed_library)
  message(FATAL_ERROR "consumer_find_package: a header-only install holds ${installed_library}")
endif()
run(configure-consumer ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK_DIR}/consumer-build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCMAKE_PREFIX_PATH=${prefix} ${compiler_arg} ${consumer_target})
run(build-consumer ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(run-consumer ${WORK_DIR}/consumer-build/attn_consumer_app)
