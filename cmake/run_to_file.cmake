# cmake -DOUTPUT=FILE -DEXE=program "-DARGS=arg1 arg2" -P run_to_file.cmake
# Runs EXE ARGS and writes its stdout to FILE, only when it succeeded: a
# failing generator fails the build instead of leaving an empty page.
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND "${EXE}" ${args} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} ${ARGS} failed (${rc}): ${err}")
endif()
file(WRITE "${OUTPUT}.tmp" "${out}")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
