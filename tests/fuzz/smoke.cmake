# SPDX-License-Identifier: Apache-2.0
# CTest smoke run of one fuzz target: RUNS inputs starting from its seed corpus, in a fresh work dir.
# cmake -DFUZZER=<exe> -DCORPUS=<seed dir> -DWORK=<scratch dir> [-DDICT=<file>] -DRUNS=<n> -P smoke.cmake
foreach(var FUZZER CORPUS WORK RUNS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "smoke.cmake: ${var} is not set")
  endif()
endforeach()

# New inputs go to WORK (the first directory), never into the checked-in corpus.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/new)
set(args -runs=${RUNS} -seed=1 -print_final_stats=1 -artifact_prefix=${WORK}/)
if(DICT)
  list(APPEND args -dict=${DICT})
endif()
execute_process(COMMAND ${FUZZER} ${args} ${WORK}/new ${CORPUS} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB artifacts ${WORK}/crash-* ${WORK}/leak-* ${WORK}/timeout-* ${WORK}/oom-*)
  message(FATAL_ERROR "${FUZZER} failed (${rc}); reproducer: ${artifacts}")
endif()
