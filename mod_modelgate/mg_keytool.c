/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * mg_keytool.c -- `modelgate-key`: makes API keys and the lines of the key
 * file (ModelGateKeyFile), which holds digests only.
 *
 *   modelgate-key hash [KEY]       digest of KEY (or of one line of stdin)
 *   modelgate-key new ID TENANT TIER [SCOPES]
 *                                  a new random key: the key-file line on
 *                                  stdout, the key itself on stderr
 */
#include <stdio.h>
#include <string.h>
#include <openssl/rand.h>
#include <apr_general.h>
#include "mg_keys.h"
#include "mg_policy.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: modelgate-key hash [KEY]\n"
            "       modelgate-key new KEY-ID TENANT TIER [SCOPES]\n"
            "The key file (ModelGateKeyFile) takes the lines these print.\n");
    return 2;
}

static void print_digest(const char *key, size_t len)
{
    unsigned char digest[MG_KEYS_DIGEST_LEN];
    char hex[2 * MG_KEYS_DIGEST_LEN + 1];

    mg_keys_digest(key, len, digest);
    mg_keys_digest_hex(digest, hex);
    printf("sha256:%s", hex);
}

static int cmd_hash(int argc, char **argv)
{
    char line[MG_KEYS_PRESENTED_MAX + 2];
    size_t len;

    if (argc > 3) {
        return usage();
    }
    if (argc == 3) {
        print_digest(argv[2], strlen(argv[2]));
        putchar('\n');
        return 0;
    }
    if (!fgets(line, sizeof(line), stdin)) {
        fprintf(stderr, "modelgate-key: no key on standard input\n");
        return 1;
    }
    len = strcspn(line, "\r\n");
    if (len == 0 || len > MG_KEYS_PRESENTED_MAX) {
        fprintf(stderr, "modelgate-key: a key is 1 to %d bytes\n",
                MG_KEYS_PRESENTED_MAX);
        return 1;
    }
    print_digest(line, len);
    putchar('\n');
    return 0;
}

static int cmd_new(int argc, char **argv)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char random[32];
    char key[3 + sizeof(random) + 1];
    int i;

    if (argc < 5 || argc > 6) {
        return usage();
    }
    for (i = 2; i < 5; i++) {
        if (!mg_policy_name_valid(argv[i])) {
            fprintf(stderr, "modelgate-key: '%s' is not a name (letters, "
                    "digits, '.', '_', '-')\n", argv[i]);
            return 1;
        }
    }
    if (RAND_bytes(random, sizeof(random)) != 1) {
        fprintf(stderr, "modelgate-key: no randomness available\n");
        return 1;
    }
    /* 62 symbols; the modulo bias on 256 values is under 2%, which costs
     * a fraction of a bit of the key's ~190 bits. */
    memcpy(key, "mg-", 3);
    for (i = 0; i < (int)sizeof(random); i++) {
        key[3 + i] = alphabet[random[i] % (sizeof(alphabet) - 1)];
    }
    key[3 + sizeof(random)] = '\0';
    print_digest(key, strlen(key));
    printf("  %s  %s  %s%s%s\n", argv[2], argv[3], argv[4],
           argc == 6 ? "  " : "", argc == 6 ? argv[5] : "");
    fprintf(stderr, "key for %s (give it to the client; it is not stored): "
            "%s\n", argv[2], key);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "hash")) {
        return cmd_hash(argc, argv);
    }
    if (argc >= 2 && !strcmp(argv[1], "new")) {
        return cmd_new(argc, argv);
    }
    return usage();
}
