# Compiles the files of a folder into a target as byte arrays, so the binary
# carries its web pages and deployment templates (air-gapped hosts: nothing is
# read from disk or the network at run time).
#
#   lmhost_embed(TARGET NAMESPACE DIR)
# adds to TARGET a generated .cpp defining
#   const std::map<std::string, std::string_view>& NAMESPACE::embedded_files();
# keyed by the path relative to DIR ("k8s/deployment.yaml"). The .cpp is
# regenerated whenever a file of DIR changes (the glob is re-checked at build).
set(LMHOST_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/EmbedGen.cmake)

function(lmhost_embed target ns dir)
  file(GLOB_RECURSE files CONFIGURE_DEPENDS LIST_DIRECTORIES false "${dir}/*")
  list(SORT files)
  string(REPLACE "::" "_" tag "${ns}")
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_${tag}.cpp)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNS=${ns} -DDIR=${dir} "-DFILES=${files}" -P ${LMHOST_EMBED_SCRIPT}
    DEPENDS ${files} ${LMHOST_EMBED_SCRIPT}
    COMMENT "Embedding ${dir}" VERBATIM)
  target_sources(${target} PRIVATE ${out})
endfunction()
