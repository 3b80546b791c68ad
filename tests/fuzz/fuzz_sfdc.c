/*
 * fuzz_sfdc: the Salesforce Outbound Message parser (sfdc_outbound_parse, expat with
 * DTDs and entities refused and nesting, elements and text bounded) on hostile XML,
 * then what ingest does next: the table as a jdoc for the rule engine.
 *
 * Input: the request body, as is.
 * Invariants beyond "no crash, no leak, no UB":
 *  - a failure has a non-empty reason and leaves nothing allocated in the result;
 *  - a success has an organization_id string and 1..100 notifications, each with an
 *    "id" string, and no "session_id" key;
 *  - the redacted copy parses again to the same table (only the SessionId's text
 *    changed) and is at most len + 10 bytes long;
 *  - jdoc_from_json accepts the table.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "jdoc.h"
#include "sfdc_outbound.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sfdc_outbound m, again;
    char why[256] = "";
    char why2[256] = "";

    if (sfdc_outbound_parse(data, size, &m, why, sizeof why) != 0) {
        fuzz_check(why[0] != '\0', "failure without a reason");
        fuzz_check(m.body == NULL && m.redacted == NULL, "failure left a result");
        return 0;
    }
    json_t *notes = json_object_get(m.body, "notifications");
    fuzz_check(json_is_string(json_object_get(m.body, "organization_id")), "no organization_id");
    fuzz_check(json_object_get(m.body, "session_id") == NULL, "session_id in the table");
    fuzz_check(json_array_size(notes) >= 1 &&
                   json_array_size(notes) <= SFDC_OUTBOUND_MAX_NOTIFICATIONS,
               "%zu notifications", json_array_size(notes));
    for (size_t i = 0; i < json_array_size(notes); i++)
        fuzz_check(json_is_string(json_object_get(json_array_get(notes, i), "id")),
                   "notification %zu without id", i);
    fuzz_check(m.redacted != NULL && m.redacted_len <= size + 10, "redacted copy of %zu bytes",
               m.redacted_len);
    fuzz_check(sfdc_outbound_parse(m.redacted, m.redacted_len, &again, why2, sizeof why2) == 0,
               "the redacted copy does not parse: %s", why2);
    fuzz_check(json_equal(again.body, m.body), "the redacted copy parses to another table");
    sfdc_outbound_free(&again);

    struct jdoc *d = jdoc_from_json(m.body, why, sizeof why);
    fuzz_check(d != NULL, "jdoc_from_json refused the table: %s", why);
    jdoc_free(d);
    sfdc_outbound_free(&m);
    return 0;
}
