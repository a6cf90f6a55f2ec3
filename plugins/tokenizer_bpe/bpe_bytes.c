/* bpe_bytes.c — GPT-2's bytes_to_unicode: every byte gets a printable code
 * point so that byte-level tokens are strings (' ' is 'Ġ' U+0120). The
 * printable ranges ! .. ~, ¡ .. ¬, ® .. ÿ map to themselves; the other 68
 * bytes get U+0100 + n in increasing byte order. */
#include "bpe_internal.h"

gunichar ps_bpe_byte_to_cp[256];
guint8 ps_bpe_byte_order[256];
static int cp_to_byte_[256 + 68];

static gboolean printable(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static gpointer init_tables(gpointer unused) {
  (void)unused;
  int n = 0, k = 0;
  for (int b = 0; b < 256; b++)
    if (printable(b)) {
      ps_bpe_byte_order[k++] = (guint8)b;
      ps_bpe_byte_to_cp[b] = (gunichar)b;
    }
  for (int b = 0; b < 256; b++)
    if (!printable(b)) {
      ps_bpe_byte_order[k++] = (guint8)b;
      ps_bpe_byte_to_cp[b] = (gunichar)(256 + n++);
    }
  for (int i = 0; i < 256 + 68; i++) cp_to_byte_[i] = -1;
  for (int b = 0; b < 256; b++) cp_to_byte_[ps_bpe_byte_to_cp[b]] = b;
  return NULL;
}

void ps_bpe_bytes_init(void) {
  static GOnce once = G_ONCE_INIT;
  g_once(&once, init_tables, NULL);
}

int ps_bpe_cp_to_byte(gunichar cp) { return cp < 256 + 68 ? cp_to_byte_[cp] : -1; }
