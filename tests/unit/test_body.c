/* Licensed under the Apache License, Version 2.0. See LICENSE.
 *
 * test_body.c -- reading OpenAI-style request bodies and changing their
 * model (mg_body.c): what is read, what is refused, and that a rewrite
 * (of the model, or asking a stream for its usage) changes no other byte.
 */
#include "mg_test.h"
#include <string.h>

#include <apr_strings.h>
#include <jansson.h>
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

    /* nulls are absent; of two token caps the larger counts (a model
     * server may read either), the other is kept */
    assert_int_equal(inspect(p, "{\"model\":\"m\",\"stream\":null,"
                             "\"max_tokens\":10,\"max_completion_tokens\":20}",
                             &info, &why), MG_BODY_OK);
    assert_int_equal(info.stream, 0);
    assert_int_equal(info.max_tokens, 20);
    assert_string_equal(info.max_tokens_field, "max_completion_tokens");
    assert_int_equal(info.other_cap, 10);
    assert_string_equal(info.other_cap_field, "max_tokens");
    assert_int_equal(inspect(p, "{\"max_tokens\":200,"
                             "\"max_completion_tokens\":10}", &info, &why),
                     MG_BODY_OK);
    assert_int_equal(info.max_tokens, 200);
    assert_string_equal(info.max_tokens_field, "max_tokens");
    assert_int_equal(info.other_cap, 10);
    assert_string_equal(info.other_cap_field, "max_completion_tokens");
    assert_int_equal(inspect(p, "{\"max_completion_tokens\":null,"
                             "\"max_tokens\":7}", &info, &why), MG_BODY_OK);
    assert_int_equal(info.max_tokens, 7);
    assert_int_equal(info.other_cap, -1);
    assert_null(info.other_cap_field);
    /* the cap not used is checked too */
    assert_int_equal(inspect(p, "{\"max_completion_tokens\":5,"
                             "\"max_tokens\":\"9\"}", &info, &why),
                     MG_BODY_INVALID);

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

/* ---- asking a streaming request for its usage ---------------------------- */

static const char *want_usage(apr_pool_t *p, const char *text, int changes)
{
    char *out = NULL;
    apr_size_t outlen = 0;
    mg_body_info info;
    const char *why;
    int changed = -1;
    json_t *root, *opt;

    assert_int_equal(mg_body_inspect(p, text, strlen(text), &info, &why),
                     MG_BODY_OK);
    assert_null(mg_body_want_usage(p, text, strlen(text), &changed, &out,
                                   &outlen));
    assert_int_equal(changed, changes);
    if (!changed) {
        assert_null(out);
        return text;
    }
    assert_int_equal(strlen(out), outlen);
    /* what comes out is a body the gateway reads, that asks for usage */
    assert_int_equal(mg_body_inspect(p, out, outlen, &info, &why),
                     MG_BODY_OK);
    root = json_loadb(out, outlen, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(root);
    opt = json_object_get(root, "stream_options");
    assert_true(json_is_true(json_object_get(opt, "include_usage")));
    json_decref(root);
    return out;
}

static void test_want_usage_changes_only_what_it_must(void **state)
{
    apr_pool_t *p = *state;

    /* added as the last member, the spacing kept */
    assert_string_equal(
        want_usage(p, "{\"model\":\"m\",\"stream\":true}", 1),
        "{\"model\":\"m\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true}}");
    assert_string_equal(
        want_usage(p, "{\n  \"model\": \"m\",\n  \"stream\": true\n}\n", 1),
        "{\n  \"model\": \"m\",\n  \"stream\": true,"
        "\"stream_options\":{\"include_usage\":true}\n}\n");
    assert_string_equal(want_usage(p, " { } ", 1),
                        " {\"stream_options\":{\"include_usage\":true} } ");
    /* the last value may hold braces, quotes and escapes */
    assert_string_equal(
        want_usage(p, "{\"stream\":true,\"m\":\"}\\\"{\",\"n\":[{\"a\":"
                   "\"]\"}]}", 1),
        "{\"stream\":true,\"m\":\"}\\\"{\",\"n\":[{\"a\":\"]\"}],"
        "\"stream_options\":{\"include_usage\":true}}");
    /* a stream_options further down is not the request's */
    assert_string_equal(
        want_usage(p, "{\"messages\":[{\"stream_options\":{\"include_usage\":"
                   "true}}],\"stream\":true}", 1),
        "{\"messages\":[{\"stream_options\":{\"include_usage\":true}}],"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    /* stream_options without include_usage: added in it */
    assert_string_equal(
        want_usage(p, "{\"stream_options\":{},\"stream\":true}", 1),
        "{\"stream_options\":{\"include_usage\":true},\"stream\":true}");
    assert_string_equal(
        want_usage(p, "{\"stream_options\":{ \"x\" : [1, {}] },\"stream\":"
                   "true}", 1),
        "{\"stream_options\":{ \"x\" : [1, {}],\"include_usage\":true },"
        "\"stream\":true}");
    /* false and null become true */
    assert_string_equal(
        want_usage(p, "{\"stream\":true,\"stream_options\":{\"include_usage\""
                   " : false, \"y\":1}}", 1),
        "{\"stream\":true,\"stream_options\":{\"include_usage\" : true, "
        "\"y\":1}}");
    assert_string_equal(
        want_usage(p, "{\"stream_options\":{\"include_usage\":null}}", 1),
        "{\"stream_options\":{\"include_usage\":true}}");
    assert_string_equal(
        want_usage(p, "{\"stream_options\" : null ,\"stream\":true}", 1),
        "{\"stream_options\" : {\"include_usage\":true} ,\"stream\":true}");
    /* escaped names */
    assert_string_equal(
        want_usage(p, "{\"stream_\\u006fptions\":{\"include_\\u0075sage\":"
                   "false}}", 1),
        "{\"stream_\\u006fptions\":{\"include_\\u0075sage\":true}}");
    /* asked for already: nothing changes */
    want_usage(p, "{\"stream\":true,\"stream_options\":{\"include_usage\":"
               "true}}", 0);
    want_usage(p, "{\"stream_options\":{\"a\":{\"include_usage\":false},"
               "\"include_usage\":true}}", 0);
}

static void test_want_usage_refuses_what_the_server_would(void **state)
{
    static const struct {
        const char *text;
        const char *says;
    } cases[] = {
        { "[1]", "not a JSON object" },
        { "{\"stream_options\":\"yes\"}", "stream_options is not an object" },
        { "{\"stream_options\":[]}", "stream_options is not an object" },
        { "{\"stream_options\":{\"include_usage\":1}}",
          "include_usage is not true or false" },
        { "{\"stream_options\":{\"include_usage\":\"true\"}}",
          "include_usage is not true or false" },
    };
    apr_pool_t *p = *state;
    apr_size_t i;
    char *out = NULL;
    apr_size_t outlen = 0;
    int changed = -1;
    const char *why;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why = mg_body_want_usage(p, cases[i].text, strlen(cases[i].text),
                                 &changed, &out, &outlen);
        if (!why || !strstr(why, cases[i].says) || changed || out) {
            fail_msg("'%s': '%s', changed %d", cases[i].text,
                     why ? why : "(none)", changed);
        }
    }
}

/* A token cap set by the gateway (a tier's ceiling): only its bytes, or
 * one member added last. */
static void test_set_int_changes_only_the_cap(void **state)
{
    apr_pool_t *p = *state;
    char *out;
    apr_size_t n;
    const char *in = "{\"model\": \"m\", \"max_tokens\": 99999 }";

    assert_null(mg_body_set_int(p, in, strlen(in), "max_tokens", 4096, &out,
                                &n));
    assert_int_equal(n, strlen("{\"model\": \"m\", \"max_tokens\": 4096 }"));
    assert_memory_equal(out, "{\"model\": \"m\", \"max_tokens\": 4096 }", n);
    assert_null(mg_body_set_int(p, "{\"model\": \"m\" }", 14, "max_tokens",
                                16, &out, &n));
    assert_memory_equal(out, "{\"model\": \"m\",\"max_tokens\":16 }", n);
    assert_null(mg_body_set_int(p, "{}", 2, "max_tokens", 7, &out, &n));
    assert_memory_equal(out, "{\"max_tokens\":7}", n);
    /* the nested one is not the member */
    assert_null(mg_body_set_int(p, "{\"x\":{\"max_tokens\":1}}", 22,
                                "max_tokens", 2, &out, &n));
    assert_memory_equal(out, "{\"x\":{\"max_tokens\":1},\"max_tokens\":2}", n);
    assert_non_null(mg_body_set_int(p, "[1]", 3, "max_tokens", 2, &out, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        MG_TEST(test_reads_the_fields),
        MG_TEST(test_refuses_what_it_cannot_read),
        MG_TEST(test_rewrite_changes_only_the_model),
        MG_TEST(test_want_usage_changes_only_what_it_must),
        MG_TEST(test_set_int_changes_only_the_cap),
        MG_TEST(test_want_usage_refuses_what_the_server_would),
    };
    return MG_RUN(tests);
}
