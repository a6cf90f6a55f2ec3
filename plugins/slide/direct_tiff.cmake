# direct_tiff.cmake — ps_slide_direct_tiff(<target>): a target that compiles
# plugins/slide/slide.c also gets slide_tiff.c and libtiff, so that slide.c
# reads Aperio / generic-TIFF levels through libvips' tiffload where that
# gives OpenSlide's pixels. Without it (or without libtiff) slide.c reads
# everything through OpenSlide. Included by plugins/slide, plugins/preprocess
# and their tests.
include_guard(GLOBAL)
pkg_check_modules(PS_LIBTIFF IMPORTED_TARGET GLOBAL libtiff-4)
function(ps_slide_direct_tiff target)
  if(PS_LIBTIFF_FOUND)
    target_sources(${target} PRIVATE "${CMAKE_SOURCE_DIR}/plugins/slide/slide_tiff.c")
    target_compile_definitions(${target} PRIVATE PS_SLIDE_DIRECT_TIFF)
    target_link_libraries(${target} PRIVATE PkgConfig::PS_LIBTIFF)
  endif()
endfunction()
