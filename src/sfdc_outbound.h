/*
 * sfdc_outbound: reads a Salesforce Outbound Message (a SOAP 1.1 notifications() call,
 * text/xml) with expat into the table a rule sees, and provides the acknowledgement
 * Salesforce requires. Refuses DOCTYPE/DTDs, entity declarations and external entities
 * outright, and bounds nesting, element count, text size and notifications. Pure
 * functions: no I/O, no logging, no global state, so any HTTP thread may call them.
 */
#ifndef HOOKLINE_SFDC_OUTBOUND_H
#define HOOKLINE_SFDC_OUTBOUND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SFDC_OUTBOUND_MAX_DEPTH 32          /* element nesting */
#define SFDC_OUTBOUND_MAX_ELEMENTS 20000    /* elements in one message */
#define SFDC_OUTBOUND_MAX_TEXT 65536        /* bytes of text in one element */
#define SFDC_OUTBOUND_MAX_NOTIFICATIONS 100 /* Salesforce sends at most 100 */

/* Namespaces of the message (Salesforce's outbound messaging WSDL). */
#define SFDC_OUTBOUND_NS_SOAP "http://schemas.xmlsoap.org/soap/envelope/"
#define SFDC_OUTBOUND_NS "http://soap.sforce.com/2005/09/outbound"

/* The answer that tells Salesforce the message was received (send as text/xml with 200). */
extern const char sfdc_outbound_ack[];

/* One parsed message. Both members are owned by the struct (sfdc_outbound_free). */
struct sfdc_outbound {
    /* {"organization_id", "action_id", "enterprise_url", "partner_url",
     *  "notifications": [{"id", "sobject": {"type": "Account", "Id": ..., FIELD: ...}}]}.
     * A field sent with xsi:nil="true" is null; a field with child elements is an object.
     * The SessionId is never in it (it is a credential). */
    json_t *body;
    /* The message as received with the SessionId's text replaced by "[redacted]"
     * (byte-identical otherwise): what is stored and shown as the raw body. */
    unsigned char *redacted;
    size_t redacted_len;
};

/* Parses xml[len] (UTF-8; expat checks well-formedness). Returns 0 and fills *out, or -1
 * with a one-line reason in why[why_len] ("DOCTYPE is not allowed", "no OrganizationId",
 * ...) and *out left empty. */
int sfdc_outbound_parse(const unsigned char *xml, size_t len, struct sfdc_outbound *out, char *why,
                        size_t why_len);

/* True when the received organization id matches the configured one: equal, or the
 * configured 15-character id equals the first 15 characters of an 18-character one.
 * Both borrowed. */
bool sfdc_outbound_org_matches(const char *configured, const char *received);

/* Releases what m owns (not m itself). NULL is a no-op. */
void sfdc_outbound_free(struct sfdc_outbound *m);

#endif
