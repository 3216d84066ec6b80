# cmake -DEXE=path -DNAME=rchd -DSECTION=8 -DSUMMARY="..." -DVERSION=x "-DSEE_ALSO=rch(1) rch-wkr(1)" -DOUTPUT=FILE -P help_to_man.cmake
# The man page of a program whose flags are parsed by hand (rchd, rch-wkr):
# its own --help text, verbatim, so the page says what --help says.
execute_process(COMMAND "${EXE}" --help OUTPUT_VARIABLE help ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR help STREQUAL "")
  message(FATAL_ERROR "${EXE} --help failed (${rc}): ${err}")
endif()
# troff: backslashes and minus signs escaped, no line starting with '.' or '\''.
string(REPLACE "\\" "\\e" help "${help}")
string(REPLACE "-" "\\-" help "${help}")
string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" help "${help}")
string(REGEX REPLACE "\n+$" "" help "${help}")
string(TOUPPER "${NAME}" upper)
string(REPLACE "-" "\\-" name_roff "${NAME}")
set(see "")
separate_arguments(see_also UNIX_COMMAND "${SEE_ALSO}")
foreach(ref IN LISTS see_also)
  string(REGEX REPLACE "^([^()]+)\\(([0-9])\\)$" ".BR \\1 (\\2)" line "${ref}")
  string(REPLACE "-" "\\-" line "${line}")
  string(APPEND see "${line}\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" ".TH ${upper} ${SECTION} \"\" \"rch ${VERSION}\" \"rch manual\"
.SH NAME
${name_roff} \\- ${SUMMARY}
.SH DESCRIPTION
What
.B ${name_roff} \\-\\-help
prints:
.PP
.nf
${help}
.fi
.SH SEE ALSO
${see}")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
