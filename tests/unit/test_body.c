/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_body.c -- reading OpenAI-style request bodies and changing their
 * model (mg_body.c): what is read, what is refused, and that a rewrite
 * changes no other byte.
 */
#include "mg_test.h"
#include <string.h>

#include <apr_strings.h>
#include "mg_body.h"

static mg_body_status inspect(apr_pool_t *p, const char *text,
                              mg_body_info *info, const char **why)
{
    return mg_body_inspect(p, text, strlen(text), info, why);
}

static void test_reads_the_fields(void **state)
{
    apr_pool_t *p = *state;
    mg_body_info info;
    const char *why;

    assert_int_equal(inspect(p, "{\"model\":\"gpt-4o-mini\",\"messages\":"
                             "[{\"role\":\"user\",\"content\":\"hi\"}],"
                             "\"stream\":true,\"max_tokens\":128}",
                             &info, &why), MG_BODY_OK);
    assert_string_equal(info.model, "gpt-4o-mini");
    assert_int_equal(info.stream, 1);
    assert_int_equal(info.max_tokens, 128);
    assert_null(why);

    /* absent fields */
    assert_int_equal(inspect(p, " {\"input\": \"x\"} ", &info, &why),
                     MG_BODY_OK);
    assert_null(info.model);
    assert_int_equal(info.stream, 0);
    assert_int_equal(info.max_tokens, -1);

    /* nulls are absent; the newer token cap wins */
    assert_int_equal(inspect(p, "{\"model\":\"m\",\"stream\":null,"
                             "\"max_tokens\":10,\"max_completion_tokens\":20}",
                             &info, &why), MG_BODY_OK);
    assert_int_equal(info.stream, 0);
    assert_int_equal(info.max_tokens, 20);
    assert_int_equal(inspect(p, "{\"max_completion_tokens\":null,"
                             "\"max_tokens\":7}", &info, &why), MG_BODY_OK);
    assert_int_equal(info.max_tokens, 7);

    /* a nested "model" is not the request's */
    assert_int_equal(inspect(p, "{\"metadata\":{\"model\":\"x\"}}", &info,
                             &why), MG_BODY_OK);
    assert_null(info.model);

    /* escapes are decoded */
    assert_int_equal(inspect(p, "{\"mod\\u0065l\":\"a\\/b\"}", &info, &why),
                     MG_BODY_OK);
    assert_string_equal(info.model, "a/b");
}

static void test_refuses_what_it_cannot_read(void **state)
{
    static const struct {
        const char *text;
        mg_body_status status;
        const char *says;
    } cases[] = {
        { "", MG_BODY_MALFORMED, "not valid JSON" },
        { "{\"model\":", MG_BODY_MALFORMED, "not valid JSON" },
        { "{\"model\":\"a\"} trailing", MG_BODY_MALFORMED, "not valid JSON" },
        { "{'model':'a'}", MG_BODY_MALFORMED, "not valid JSON" },
        { "{\"model\":\"a\",\"model\":\"b\"}", MG_BODY_MALFORMED, "duplicate" },
        { "[1,2]", MG_BODY_INVALID, "must be a JSON object" },
        { "\"text\"", MG_BODY_MALFORMED, "not valid JSON" },
        { "{\"model\":42}", MG_BODY_INVALID, "'model' must be" },
        { "{\"model\":\"\"}", MG_BODY_INVALID, "'model' must be" },
        { "{\"model\":\"a\\u0000b\"}", MG_BODY_MALFORMED, "not valid JSON" },
        { "{\"stream\":\"yes\"}", MG_BODY_INVALID, "'stream' must be" },
        { "{\"max_tokens\":-1}", MG_BODY_INVALID, "whole numbers" },
        { "{\"max_tokens\":1.5}", MG_BODY_INVALID, "whole numbers" },
        { "{\"max_completion_tokens\":\"9\"}", MG_BODY_INVALID,
          "whole numbers" },
    };
    apr_pool_t *p = *state;
    mg_body_info info;
    const char *why;
    apr_size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mg_body_status st = inspect(p, cases[i].text, &info, &why);
        if (st != cases[i].status || !why || !strstr(why, cases[i].says)) {
            fail_msg("'%s': status %d, '%s'", cases[i].text, st,
                     why ? why : "(none)");
        }
    }

    /* a model name longer than MG_BODY_MODEL_MAX */
    {
        char *text = apr_psprintf(p, "{\"model\":\"%s\"}",
                                  apr_pstrcat(p, "x", apr_psprintf(p, "%0*d",
                                              MG_BODY_MODEL_MAX, 0), NULL));
        assert_int_equal(inspect(p, text, &info, &why), MG_BODY_INVALID);
    }
}

static const char *set_model(apr_pool_t *p, const char *text,
                             const char *model)
{
    char *out;
    apr_size_t outlen;
    mg_body_info info;
    const char *why;

    assert_int_equal(inspect(p, text, &info, &why), MG_BODY_OK);
    assert_null(mg_body_set_model(p, text, strlen(text), model, &out,
                                  &outlen));
    assert_int_equal(strlen(out), outlen);
    /* what comes out reads back with the new model */
    assert_int_equal(mg_body_inspect(p, out, outlen, &info, &why),
                     MG_BODY_OK);
    assert_string_equal(info.model, model);
    return out;
}

static void test_rewrite_changes_only_the_model(void **state)
{
    apr_pool_t *p = *state;

    /* numbers, spacing and order as the client wrote them */
    assert_string_equal(
        set_model(p, "{ \"temperature\": 0.7, \"model\" : \"big\" ,\n"
                  "  \"messages\": [{\"model\": \"inner\"}], \"n\": 1e2 }",
                  "small"),
        "{ \"temperature\": 0.7, \"model\" : \"small\" ,\n"
        "  \"messages\": [{\"model\": \"inner\"}], \"n\": 1e2 }");
    /* the model's old value may hold escapes and braces */
    assert_string_equal(set_model(p, "{\"model\":\"a\\\"}{\",\"x\":[1]}", "b"),
                        "{\"model\":\"b\",\"x\":[1]}");
    /* an escaped key */
    assert_string_equal(set_model(p, "{\"x\":{\"y\":[\"}\"]},\"mod\\u0065l\":"
                                  "\"a\"}", "b"),
                        "{\"x\":{\"y\":[\"}\"]},\"mod\\u0065l\":\"b\"}");
    /* the new name is escaped as JSON */
    assert_string_equal(set_model(p, "{\"model\":\"a\"}", "q\"uote/\\"),
                        "{\"model\":\"q\\\"uote/\\\\\"}");
    /* absent: added first */
    assert_string_equal(set_model(p, "{\"input\":\"x\"}", "emb"),
                        "{\"model\":\"emb\",\"input\":\"x\"}");
    assert_string_equal(set_model(p, "  { }", "emb"),
                        "  {\"model\":\"emb\" }");
    /* a model after values of every kind */
    assert_string_equal(set_model(p, "{\"a\":true,\"b\":null,\"c\":-1.5,"
                                  "\"d\":{},\"e\":[],\"model\":\"m\"}", "n"),
                        "{\"a\":true,\"b\":null,\"c\":-1.5,\"d\":{},"
                        "\"e\":[],\"model\":\"n\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_reads_the_fields),
        MG_TEST(test_refuses_what_it_cannot_read),
        MG_TEST(test_rewrite_changes_only_the_model),
    };
    return MG_RUN(tests);
}
