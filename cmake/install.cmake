# Installing rch like a packaged tool (GNUInstallDirs): the three binaries,
# man pages and shell completions generated from the built binaries' own
# command definitions, the systemd units, docs and examples.
# scripts/package.sh turns an install of this into Debian packages.
include(GNUInstallDirs)

set(RCH_GEN "${CMAKE_BINARY_DIR}/generated/dist")
file(MAKE_DIRECTORY "${RCH_GEN}")

# Made after linking by the binaries themselves, so they cannot drift from --help.
set(RCH_GENERATED_DOCS)
foreach(spec "rch.1|__man rch" "rch-config.5|__man rch-config" "rch.bash|__completion bash" "_rch|__completion zsh")
  string(REPLACE "|" ";" parts "${spec}")
  list(GET parts 0 out)
  list(GET parts 1 args)
  add_custom_command(
    OUTPUT "${RCH_GEN}/${out}"
    COMMAND "${CMAKE_COMMAND}" "-DOUTPUT=${RCH_GEN}/${out}" "-DEXE=$<TARGET_FILE:rch>" "-DARGS=${args}"
            -P "${CMAKE_SOURCE_DIR}/cmake/run_to_file.cmake"
    DEPENDS rch "${CMAKE_SOURCE_DIR}/cmake/run_to_file.cmake"
    COMMENT "Generating ${out} from rch's command definitions"
    VERBATIM)
  list(APPEND RCH_GENERATED_DOCS "${RCH_GEN}/${out}")
endforeach()
foreach(spec "rchd|8|the rch local build daemon|rch(1) rch-wkr(1)"
             "rch-wkr|1|the rch worker agent|rch(1) rchd(8)")
  string(REPLACE "|" ";" parts "${spec}")
  list(GET parts 0 name)
  list(GET parts 1 section)
  list(GET parts 2 summary)
  list(GET parts 3 see_also)
  add_custom_command(
    OUTPUT "${RCH_GEN}/${name}.${section}"
    COMMAND "${CMAKE_COMMAND}" "-DEXE=$<TARGET_FILE:${name}>" "-DNAME=${name}" "-DSECTION=${section}"
            "-DSUMMARY=${summary}" "-DVERSION=${RCH_VERSION}" "-DSEE_ALSO=${see_also}"
            "-DOUTPUT=${RCH_GEN}/${name}.${section}" -P "${CMAKE_SOURCE_DIR}/cmake/help_to_man.cmake"
    DEPENDS ${name} "${CMAKE_SOURCE_DIR}/cmake/help_to_man.cmake"
    COMMENT "Generating ${name}.${section} from ${name} --help"
    VERBATIM)
  list(APPEND RCH_GENERATED_DOCS "${RCH_GEN}/${name}.${section}")
endforeach()
add_custom_target(rch_docs ALL DEPENDS ${RCH_GENERATED_DOCS})

install(TARGETS rch rchd rch-wkr RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
install(FILES "${RCH_GEN}/rch.1" "${RCH_GEN}/rch-wkr.1" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1")
install(FILES "${RCH_GEN}/rch-config.5" DESTINATION "${CMAKE_INSTALL_MANDIR}/man5")
install(FILES "${RCH_GEN}/rchd.8" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
install(FILES "${RCH_GEN}/rch.bash" DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" RENAME rch)
install(FILES "${RCH_GEN}/_rch" DESTINATION "${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions")

# The units name the installed rchd, so they are written at install time,
# when the prefix is known (cmake --install --prefix /usr).
install(CODE "
  set(RCH_UNIT_RCHD \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/rchd\")
  foreach(scope user system)
    set(unit \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/lib/systemd/\${scope}/rchd.service\")
    message(STATUS \"Installing: \${unit}\")
    configure_file(\"${CMAKE_SOURCE_DIR}/packaging/systemd/rchd.\${scope}.service.in\" \"\${unit}\" @ONLY)
  endforeach()
")

install(FILES README.md docs/json.md docs/lua-api.md DESTINATION "${CMAKE_INSTALL_DOCDIR}")
install(DIRECTORY hooks/examples/ DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples/hooks")
install(DIRECTORY strategies/ DESTINATION "${CMAKE_INSTALL_DOCDIR}/examples/strategies")
