/*
 * tayori/plugin.h — the contract between the Tayori host and a channel plugin, ABI v1.
 *
 * A plugin is a shared library that exports exactly one C symbol, TAYORI_PLUGIN_ENTRY_SYMBOL, returning
 * a pointer to a constant tayori_plugin descriptor. Only C types cross this boundary: no C++ types, no
 * exceptions, no allocator hand-over. Everything a plugin gives the host is either static (the
 * descriptor) or copied by the host during the call (requests, outcomes, events).
 *
 * The plugin is sans-I/O by default (docs/architecture.md §3): the host owns sockets, TLS, HTTP/2, pooling,
 * retries, rate limits and backoff. A plugin translates:
 *   on_create   settings              -> instance (settings already checked against the declared map)
 *   on_build    delivery              -> one or more transport requests (HTTP or SMTP)
 *   on_classify delivery + response   -> outcome (delivered | retry | permanent)
 *   on_build_batch deliveries         -> one request carrying many deliveries of identical content (optional)
 *   on_inbound  inbound HTTP request  -> normalised events + the HTTP answer to give the provider
 * A plugin whose work is not an HTTP/SMTP exchange (a file, a binary protocol) implements on_deliver
 * instead of on_build/on_classify; the host calls it from a worker thread, never from an I/O thread.
 *
 * Naming: tayori_on_* / on_* members are implemented by the plugin; tayori_host_* / host_* by the host.
 *
 * Versioning (append-only, docs/architecture.md §6.2): every struct starts with its size. Fields are only ever added
 * at the end of a struct and the minor version is raised; nothing is reordered or repurposed. A host loads plugins
 * of its own minor and of every older one: it reads an older plugin's shorter descriptor into a zeroed one and
 * checks every optional callback for NULL. It refuses a plugin built for a newer minor than its own, since such a
 * plugin may rely on host behaviour (a flag in an outcome, a new status) that an older host would silently ignore,
 * and a silent misreading loses messages: build a plugin against the headers of the oldest host it must run in.
 * Hosts that predate this refusal load a newer plugin anyway, so a plugin checks host->struct_size (with
 * TAYORI_HAS_FIELD) before using a host service added after 1.0. A change that cannot be made this way raises
 * TAYORI_ABI_MAJOR, and hosts refuse plugins of another major.
 *
 * Threading: on_build, on_build_batch, on_classify, on_deliver and on_inbound may be called concurrently
 * from several host threads for the same instance; a plugin that keeps mutable state guards it itself.
 * on_create and on_destroy are never concurrent with anything else on that instance. on_classify runs on
 * the host's I/O thread as the answer arrives: it must be quick and must not block, and a host_exchange
 * from it (or a host_token that must mint) is answered at once with a transport failure, not sent.
 *
 * Strings: tayori_str is a pointer + length, UTF-8, NOT necessarily NUL-terminated.
 *
 * History: 1.0 the first contract. 1.1 host services (JWT signing, HMAC, base64, constant-time compare,
 * a token cache, a synchronous exchange for prerequisite calls such as an OAuth grant), the delivery's
 * unsubscribe and callback URLs, SMTP credentials / plaintext opt-in on a request, and batching of
 * identical content (batch_max, on_build_batch: LINE multicast). 1.2 two-way: the delivery's response
 * options (tayori_response_option), and inbound events that carry a signed reference and contact flags
 * (tayori_inbound_event.ref, deactivate_contact, reactivate_contact). on_inbound itself is in 1.0. 1.3 what
 * on_inbound's verification needs from the host (tayori_plugin.inbound_flags).
 */
#ifndef TAYORI_PLUGIN_H
#define TAYORI_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include <type_traits> /* TAYORI_HAS_FIELD */
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TAYORI_ABI_MAJOR 1
#define TAYORI_ABI_MINOR 3

/* The one symbol a plugin exports: const tayori_plugin* tayori_plugin_entry(void). */
#define TAYORI_PLUGIN_ENTRY_SYMBOL "tayori_plugin_entry"

#if defined(__GNUC__)
#define TAYORI_EXPORT __attribute__((visibility("default")))
#else
#define TAYORI_EXPORT
#endif

/* Non-zero when the struct *ptr, which starts with its struct_size, reaches past `member`: the side that
 * filled it was built against a minor that has the field. Check it before reading a field added after 1.0
 * (a 1.0 host's delivery has no unsubscribe_url). A NULL pointer has no fields. The member's offset comes
 * from the pointer's own type, so C and C++ callers write the same thing:
 *   if (TAYORI_HAS_FIELD(delivery, unsubscribe_url) && delivery->unsubscribe_url.len > 0) ... */
#if defined(__cplusplus)
#define TAYORI_FIELD_END_(ptr, member)                                                                  \
  (offsetof(std::remove_cv<std::remove_reference<decltype(*(ptr))>::type>::type, member) + sizeof((ptr)->member))
#elif defined(__GNUC__) || defined(__clang__)
#define TAYORI_FIELD_END_(ptr, member) (offsetof(__typeof__(*(ptr)), member) + sizeof((ptr)->member))
#else /* strict ISO C: the distance from the struct's start, taken without reading anything */
#define TAYORI_FIELD_END_(ptr, member) \
  ((size_t)((const char*)&(ptr)->member - (const char*)(ptr)) + sizeof((ptr)->member))
#endif
#define TAYORI_HAS_FIELD(ptr, member) ((ptr) != NULL && (size_t)(ptr)->struct_size >= TAYORI_FIELD_END_(ptr, member))

/* ---- Basic types ------------------------------------------------------------------------------ */

/* A borrowed UTF-8 string: `data` may be NULL only when `len` is 0. */
typedef struct tayori_str {
  const char* data;
  size_t len;
} tayori_str;

/* A borrowed key/value pair (headers, settings, rendered content fields). */
typedef struct tayori_kv {
  tayori_str key;
  tayori_str value;
} tayori_kv;

/* Return codes of every on_* callback that can fail. */
typedef enum tayori_status {
  TAYORI_OK = 0,
  TAYORI_ERROR = 1,   /* the plugin wrote a message into its error buffer */
  TAYORI_INVALID = 2, /* the input (settings, delivery, inbound request) is unacceptable */
  /* 1.1, from on_build only: nothing can be built now for a transient reason (an OAuth grant timed out or
   * was answered 5xx); the host retries with its backoff. The message says why. A 1.0 host treats it as
   * an error, i.e. permanent for that channel. */
  TAYORI_RETRY_LATER = 3
} tayori_status;

/* A host-owned buffer into which a plugin writes a NUL-terminated message, truncated to capacity.
 * OWNERSHIP: host owns; valid for the duration of the call only. */
typedef struct tayori_error_buf {
  char* data;
  size_t capacity;
} tayori_error_buf;

/* ---- Declared settings (the plugin's config map, docs/architecture.md §6.4) ------------------------------------ */

typedef enum tayori_setting_type {
  TAYORI_SETTING_STRING = 0,
  TAYORI_SETTING_INT = 1,      /* decimal integer */
  TAYORI_SETTING_BOOL = 2,     /* true | false */
  TAYORI_SETTING_DURATION = 3, /* "250ms", "10s", "5m", "24h", "7d"; handed to the plugin as milliseconds */
  TAYORI_SETTING_SECRET = 4,   /* YAML names an environment variable (`<key>_env`); the value is handed over */
  TAYORI_SETTING_URL = 5,      /* absolute http(s)/smtp(s) URL */
  TAYORI_SETTING_PATH = 6      /* a file path; the host makes a relative one absolute against the YAML's folder */
} tayori_setting_type;

/* One declared setting. The host rejects keys a plugin does not declare, missing required keys and
 * values of the wrong type, with FILE:LINE:COL messages, before on_create is called.
 * OWNERSHIP: plugin owns; static, valid until the library is unloaded. */
typedef struct tayori_setting_spec {
  const char* name;          /* snake_case key in the channel's `settings:` block */
  tayori_setting_type type;
  int required;              /* non-zero: must be present */
  const char* default_value; /* NULL: none; otherwise as it would be written in YAML */
  const char* description;   /* one line, shown by `tayori plugins` */
} tayori_setting_spec;

/* ---- Host services --------------------------------------------------------------------------- */

typedef enum tayori_log_level {
  TAYORI_LOG_DEBUG = 0,
  TAYORI_LOG_INFO = 1,
  TAYORI_LOG_WARN = 2,
  TAYORI_LOG_ERROR = 3
} tayori_log_level;

/* Where the host puts a value it produces for the plugin (a signature, a token, an encoding). The host
 * calls `write` at most once, with bytes valid only during that call: copy them.
 * OWNERSHIP: plugin owns; valid for the duration of the host_* call it is passed to. */
typedef struct tayori_out {
  void* out_ctx;
  void (*write)(void* out_ctx, tayori_str value);
} tayori_out;

typedef enum tayori_hash {
  TAYORI_HASH_SHA256 = 0, /* LINE webhook signatures */
  TAYORI_HASH_SHA1 = 1    /* Twilio request signatures */
} tayori_hash;

/* Mints a bearer token for host_token: writes it to `token` and its absolute expiry (host clock, ms since
 * the epoch) to *expires_at_ms. May call host_sign_jwt and host_exchange. Called with the cache entry
 * locked, so concurrent deliveries mint once. Returns TAYORI_RETRY_LATER for a transient failure (the
 * grant endpoint timed out or answered 5xx), TAYORI_ERROR for one that retrying will not mend. */
typedef tayori_status (*tayori_mint_fn)(void* mint_ctx, tayori_out token, int64_t* expires_at_ms,
                                        tayori_error_buf error);

struct tayori_request;
struct tayori_response;
typedef void (*tayori_response_fn)(void* response_ctx, const struct tayori_response* response);

/* Services the host offers a plugin instance. Later minors append services: check struct_size (or
 * abi_minor) before using a field beyond those of the minor you compiled against.
 * OWNERSHIP: host owns; valid from on_create until on_destroy returns. */
typedef struct tayori_host {
  uint32_t struct_size;
  uint16_t abi_major;
  uint16_t abi_minor;
  void* host_ctx; /* opaque, pass back to every host_* call */
  void (*host_log)(void* host_ctx, tayori_log_level level, tayori_str message);
  /* Milliseconds since the Unix epoch on the host's clock (injected in tests; use it, not time()). */
  int64_t (*host_now_ms)(void* host_ctx);

  /* ---- 1.1: signing helpers over OpenSSL, so no plugin hand-rolls crypto ---- */
  /* A compact JWS (RFC 7515/7519). alg "RS256" (FCM's OAuth grant) or "ES256" (APNs provider token, R||S
   * signature per RFC 7518 §3.4). Header {"alg","typ":"JWT"} merged with header_extra_json (an object,
   * e.g. {"kid":"…"}, or empty); claims_json must be an object; the key is PEM (PKCS#8 or traditional). */
  tayori_status (*host_sign_jwt)(void* host_ctx, tayori_str alg, tayori_str header_extra_json,
                                 tayori_str claims_json, tayori_str pem_private_key, tayori_out jwt,
                                 tayori_error_buf error);
  /* Raw HMAC bytes (32 for SHA-256, 20 for SHA-1). */
  tayori_status (*host_hmac)(void* host_ctx, tayori_hash hash, tayori_str key, tayori_str data, tayori_out mac,
                             tayori_error_buf error);
  /* RFC 4648 §4 (url_safe == 0, padded) or §5 (url_safe != 0, unpadded). */
  void (*host_base64)(void* host_ctx, tayori_str bytes, int url_safe, tayori_out text);
  /* Non-zero when a and b are identical; the comparison of contents takes constant time (signatures). */
  int (*host_equal_constant_time)(void* host_ctx, tayori_str a, tayori_str b);
  /* The cached bearer token under `key` (scoped to this channel instance). While host_now_ms() <
   * expires_at - refresh_before_ms the cached one is returned; otherwise `mint` is called once, even when
   * many deliveries ask at the same moment. If a re-mint fails but the old token has not expired yet, the
   * old one is returned. A mint that returns TAYORI_RETRY_LATER makes this return TAYORI_RETRY_LATER. */
  tayori_status (*host_token)(void* host_ctx, tayori_str key, int64_t refresh_before_ms, tayori_mint_fn mint,
                              void* mint_ctx, tayori_out token, tayori_error_buf error);
  /* Forgets the cached token under `key` (a provider said it expired: APNs ExpiredProviderToken, HTTP 401).
   * With a non-empty only_if_token, forgets it only while it is still that token, so a burst of requests
   * refused with one stale token causes a single re-mint. */
  void (*host_token_invalidate)(void* host_ctx, tayori_str key, tayori_str only_if_token);
  /* Sends one request through the host transport and waits for the answer, which is passed to
   * on_response before this returns. For prerequisite calls (an OAuth token grant) from on_build,
   * on_deliver or a mint function; never from on_classify or on_inbound. Returns TAYORI_INVALID when the
   * request is malformed; a transport failure is reported in the response, with TAYORI_OK. */
  tayori_status (*host_exchange)(void* host_ctx, const struct tayori_request* request,
                                 tayori_response_fn on_response, void* response_ctx);
} tayori_host;

/* The struct_size of an ABI 1.0 host: services beyond host_now_ms are absent when struct_size is this. */
#define TAYORI_HOST_V1_0_SIZE ((uint32_t)(offsetof(tayori_host, host_now_ms) + sizeof(void*)))

/* ---- Outbound: a delivery and what the plugin makes of it -------------------------------------- */

typedef enum tayori_purpose {
  TAYORI_PURPOSE_TRANSACTIONAL = 0,
  TAYORI_PURPOSE_MARKETING = 1
} tayori_purpose;

/* 1.2: one answer a message offers its recipient (two-way). The host mints `ref` and `url`; the plugin shows
 * `label` natively: a LINE quick-reply postback whose data is `ref`, an APNs category with the options in the
 * payload, FCM data, e-mail links to `url`, numbered SMS choices. A value type like tayori_kv: it is frozen
 * (arrays of it have no room for a size), so a later minor adds a parallel array instead of fields here.
 * OWNERSHIP: host owns; borrowed for the duration of the call. */
typedef struct tayori_response_option {
  tayori_str id;    /* [a-z][a-z0-9_]*: "interested" */
  tayori_str label; /* as the recipient reads it (at most 20 characters: LINE's quick-reply limit) */
  tayori_str ref;   /* opaque signed reference to (message, channel, option), at most 300 bytes; a provider
                       echoes it back (LINE postback data) and on_inbound reports it as the event's `ref` */
  tayori_str url;   /* https://…/r/<ref>: a page whose button answers; empty when the gateway has no public URL */
} tayori_response_option;

/* One attempt to hand one rendered message to one contact point.
 * OWNERSHIP: host owns everything; borrowed for the duration of the call. */
typedef struct tayori_delivery {
  uint32_t struct_size;
  tayori_str message_id;  /* the upstream id (the idempotency key) */
  tayori_str delivery_id; /* stable across retries of this message on this channel: use it as the
                             provider's de-duplication key where one exists (LINE X-Line-Retry-Key) */
  uint32_t attempt;       /* 1 for the first attempt */
  tayori_str channel;     /* the channel instance name from the YAML */
  tayori_str recipient_id;
  tayori_str contact;     /* the contact point: address, E.164 number, LINE user id, push token */
  tayori_purpose purpose;
  tayori_str category;
  tayori_str locale;      /* BCP 47, may be empty */
  tayori_str timezone;    /* IANA, may be empty */
  int64_t expires_at_ms;  /* 0: no expiry */
  const tayori_kv* content; /* rendered fields: subject, text, html, title, body, ... */
  size_t content_count;
  tayori_str metadata_json; /* the message's `metadata` object as JSON ("{}" when absent) */
  /* ---- 1.1 (check struct_size) ---- */
  /* For marketing deliveries when the gateway has a public URL: https://…/u/<signed token>, the one-click
   * unsubscribe target (RFC 8058 §3.1: POST "List-Unsubscribe=One-Click" to it; GET shows a page).
   * Empty for transactional deliveries or without a public URL. */
  tayori_str unsubscribe_url;
  /* The public URL of this channel's inbound endpoint (…/inbound/<plugin>/<channel>), for provider
   * status callbacks (Twilio StatusCallback). Empty without a public URL. */
  tayori_str callback_url;
  /* ---- 1.2 (check struct_size) ---- */
  /* The message's response options, in the order the recipient should see them; count 0: it asks
   * nothing. Deliveries with options are never batched (each carries refs of its own message). */
  const tayori_response_option* responses;
  size_t response_count;
} tayori_delivery;

typedef enum tayori_request_kind {
  TAYORI_REQUEST_HTTP = 0,
  TAYORI_REQUEST_SMTP = 1
} tayori_request_kind;

/* A transport request built by a plugin. The host copies it during host_add_request.
 * OWNERSHIP: plugin owns; must stay valid only until host_add_request returns. */
typedef struct tayori_request {
  uint32_t struct_size;
  tayori_request_kind kind;
  tayori_str method; /* HTTP: "POST", ...; SMTP: empty */
  tayori_str url;    /* https://..., smtp://host:587, smtps://host:465 */
  const tayori_kv* headers; /* HTTP headers; for SMTP none (headers belong in the RFC 5322 body) */
  size_t header_count;
  tayori_str body;   /* HTTP body, or the full RFC 5322 message for SMTP */
  tayori_str mail_from;            /* SMTP envelope sender */
  const tayori_str* mail_rcpt;     /* SMTP envelope recipients */
  size_t mail_rcpt_count;
  /* ---- 1.1 (the host reads these only when struct_size covers them) ---- */
  tayori_str username; /* SMTP AUTH user (empty: no AUTH) */
  tayori_str password; /* SMTP AUTH password */
  /* SMTP: 0 (the default) requires TLS: STARTTLS on smtp:// (RFC 3207), implicit on smtps:// (RFC 8314).
   * Non-zero lets smtp:// go without TLS, for a relay on loopback only. */
  int allow_plaintext;
} tayori_request;

/* Where on_build puts its requests. OWNERSHIP: host owns; valid for the call. */
typedef struct tayori_request_sink {
  void* sink_ctx;
  /* Returns TAYORI_OK, or TAYORI_INVALID when the request is malformed (the host says why in its log). */
  tayori_status (*host_add_request)(void* sink_ctx, const tayori_request* request);
} tayori_request_sink;

/* What the transport got back. OWNERSHIP: host owns; borrowed for the call. */
typedef struct tayori_response {
  uint32_t struct_size;
  int transport_error;    /* 0: a response arrived; otherwise it did not (timeout, refused, TLS) */
  tayori_str transport_error_text;
  int status;             /* HTTP status, or the last SMTP reply code */
  const tayori_kv* headers;
  size_t header_count;
  tayori_str body;
} tayori_response;

typedef enum tayori_outcome_kind {
  TAYORI_OUTCOME_DELIVERED = 0, /* the provider accepted the message */
  TAYORI_OUTCOME_RETRY = 1,     /* transient: the host retries with its backoff, or after retry_after_ms */
  TAYORI_OUTCOME_PERMANENT = 2  /* will never succeed as sent; the host tries the next channel */
} tayori_outcome_kind;

/* A verdict. The host provides the buffers (empty strings) and presets kind = RETRY, so a plugin that
 * returns without deciding retries rather than claiming delivery; the plugin fills what applies.
 * OWNERSHIP: host owns; valid for the call. */
typedef struct tayori_outcome {
  uint32_t struct_size;
  tayori_outcome_kind kind;
  int64_t retry_after_ms;      /* RETRY: provider-given wait (Retry-After), 0 = host decides */
  int deactivate_contact;      /* PERMANENT: the contact point is dead (hard bounce, UNREGISTERED) */
  char* reason;                /* machine-readable reason, e.g. "fcm.UNREGISTERED", "smtp.550" */
  size_t reason_capacity;
  char* provider_message_id;   /* the provider's id for the message, when it gave one */
  size_t provider_message_id_capacity;
} tayori_outcome;

/* ---- Inbound: provider webhooks -------------------------------------------------------------- */

/* An HTTP request that reached /inbound/<plugin>/<channel>. The plugin verifies the provider's signature
 * before it believes anything in it. OWNERSHIP: host owns; borrowed for the call. */
typedef struct tayori_inbound_request {
  uint32_t struct_size;
  tayori_str method;
  tayori_str url;   /* the full public URL as the provider called it (signatures cover it) */
  tayori_str path;
  tayori_str query;
  const tayori_kv* headers; /* names lower-cased */
  size_t header_count;
  tayori_str body;  /* the raw bytes, exactly as received (signatures cover them) */
} tayori_inbound_request;

typedef enum tayori_event_type {
  TAYORI_EVENT_RESPONDED = 0,   /* the recipient chose a response option: `ref` (1.2) or `response_id` */
  TAYORI_EVENT_REPLIED = 1,     /* free-text reply (`text`); a numbered choice also sets `response_id` ("2") */
  TAYORI_EVENT_OPTED_IN = 2,    /* consent given on this channel (LINE follow, SMS START) */
  TAYORI_EVENT_OPTED_OUT = 3,   /* consent withdrawn on this channel (LINE unfollow, SMS STOP) */
  TAYORI_EVENT_DELIVERED = 4,   /* delivery receipt for `message_ref` */
  TAYORI_EVENT_FAILED = 5,      /* late failure report (bounce, undelivered) for `message_ref` */
  TAYORI_EVENT_CONTACT_DEACTIVATED = 6 /* the contact point is dead; the host reads it as FAILED with
                                          deactivate_contact set */
} tayori_event_type;

/* One normalised inbound event. The host de-duplicates by (channel, provider_event_id): a provider that
 * redelivers a webhook must get the same id, so report the provider's own (LINE webhookEventId).
 * OWNERSHIP: plugin owns; copied by host_emit_event. */
typedef struct tayori_inbound_event {
  uint32_t struct_size;
  tayori_event_type type;
  tayori_str provider_event_id;  /* for de-duplication of redelivered webhooks (may be empty) */
  tayori_str message_ref;        /* the provider's id of the message it concerns (DELIVERED, FAILED: the id
                                    on_classify reported as provider_message_id); may be empty */
  tayori_str contact;            /* the contact point it came from */
  tayori_str response_id;        /* RESPONDED: the option chosen; REPLIED: the number of a numbered choice */
  tayori_str text;               /* REPLIED: the text; FAILED: the provider's reason ("twilio.30005") */
  int64_t occurred_at_ms;        /* when the provider says it happened; 0: now */
  /* ---- 1.2 (the host reads these only when struct_size covers them) ---- */
  tayori_str ref;                /* RESPONDED: the tayori_response_option.ref the provider echoed back */
  int deactivate_contact;        /* FAILED, OPTED_OUT: the contact point cannot be used any more (suppress it) */
  int reactivate_contact;        /* OPTED_IN: lift a suppression this channel made for the contact point */
} tayori_inbound_event;

/* Where on_inbound reports events and its answer to the provider. OWNERSHIP: host owns; valid for the call. */
typedef struct tayori_inbound_sink {
  void* sink_ctx;
  void (*host_emit_event)(void* sink_ctx, const tayori_inbound_event* event);
  /* Sets the HTTP answer (default 200, text/plain, empty body): TwiML for Twilio, 401 on a bad signature.
   * May be called once. */
  void (*host_set_response)(void* sink_ctx, int status, tayori_str content_type, tayori_str body);
} tayori_inbound_sink;

/* ---- The descriptor --------------------------------------------------------------------------- */

/* OWNERSHIP: plugin owns; static and constant until the library is unloaded. */
typedef struct tayori_plugin {
  uint32_t struct_size; /* sizeof(tayori_plugin) as the plugin was compiled */
  uint16_t abi_major;   /* TAYORI_ABI_MAJOR the plugin was compiled against */
  uint16_t abi_minor;
  const char* name;     /* e.g. "file_sink"; [a-z][a-z0-9_]* */
  const char* version;  /* the plugin's own version, e.g. "1.0.0" */
  const char* description;
  const char* default_contact; /* the recipient contact it uses unless the channel's YAML says otherwise:
                                  "email", "phone", "line", "push.fcm", "push.apns", or a kind of its own */
  const tayori_setting_spec* settings;
  size_t settings_count;

  /* Required. Settings arrive checked against `settings`, defaults applied, secrets resolved, durations
   * in milliseconds, all as strings. On failure write a message naming the key into `error`.
   * OWNERSHIP of *instance: plugin owns, until on_destroy. */
  tayori_status (*on_create)(const tayori_host* host, const tayori_kv* settings, size_t settings_count,
                             void** instance, tayori_error_buf error);
  /* Required. */
  void (*on_destroy)(void* instance);

  /* Sans-I/O pair: both present, or both NULL. */
  tayori_status (*on_build)(void* instance, const tayori_delivery* delivery, const tayori_request_sink* sink,
                            tayori_error_buf error);
  tayori_status (*on_classify)(void* instance, const tayori_delivery* delivery, const tayori_response* response,
                               tayori_outcome* outcome);

  /* Direct delivery, for plugins that do their own (blocking, short) I/O. Called on a worker thread.
   * Returns TAYORI_OK with `outcome` filled; TAYORI_ERROR means RETRY with the message as reason. */
  tayori_status (*on_deliver)(void* instance, const tayori_delivery* delivery, tayori_outcome* outcome);

  /* Optional: inbound webhooks for this plugin's channels (POST /inbound/<plugin>/<channel>). Verify the
   * provider's signature first (host_hmac + host_equal_constant_time), then emit one event per thing that
   * happened, in the provider's order. TAYORI_OK: the events are applied and the answer given.
   * TAYORI_INVALID answers 400 (or the 4xx host_set_response set, e.g. 401 for a bad signature) and
   * changes nothing. TAYORI_ERROR answers 500 and changes nothing (the provider redelivers). Without
   * on_inbound the host answers 404. */
  tayori_status (*on_inbound)(void* instance, const tayori_inbound_request* request,
                              const tayori_inbound_sink* sink, tayori_error_buf error);

  /* ---- 1.1: batching (a 1.0 descriptor reads as batch_max 0, on_build_batch NULL: never batched) ---- */

  /* The most deliveries one on_build_batch request may carry (LINE multicast: 500). 0: no batching. The
   * host refuses a descriptor with batch_max > 0 and no on_build_batch, or with on_build_batch and no
   * on_build/on_classify pair (the host needs both: see on_build_batch). */
  uint32_t batch_max;
  /* Optional, sans-I/O plugins only. Builds the ONE request that hands all `count` deliveries (2 ..
   * batch_max) to the provider at once. The host batches only deliveries of one channel whose purpose,
   * category and rendered content (every field, in order) are identical and whose contacts all differ;
   * everything else (ids, contact, locale, timezone, expiry, metadata, links) may differ per delivery, so
   * a request must not depend on it. The host batches only when the channel's YAML sets `batch_window`:
   * it holds a delivery that long for others to join, or until batch_max have joined.
   *
   * The host sends the request and calls on_classify once per delivery, each time with the one shared
   * response. Each delivery then keeps its own outcome, except that a delivery classified PERMANENT is
   * delivered again on its own through on_build/on_classify: a batch answer cannot say which recipient
   * was at fault (one bad LINE user id refuses the whole multicast), and a refused request delivered
   * nothing, so resending singly duplicates nothing. A RETRY outcome stands (the request may have been
   * accepted despite a timeout or 5xx; the host's backoff applies, and a later attempt may share another
   * request). A status other than TAYORI_OK, or no request / more than one, sends nothing and delivers
   * each delivery on its own, except TAYORI_RETRY_LATER, which makes every delivery RETRY.
   * The deliveries come in no particular order: derive nothing (a retry key) from their order.
   * OWNERSHIP: `deliveries` and everything they point to are host-owned, borrowed for the call. */
  tayori_status (*on_build_batch)(void* instance, const tayori_delivery* const* deliveries, size_t count,
                                  const tayori_request_sink* sink, tayori_error_buf error);

  /* ---- 1.3 (an older descriptor reads as 0: no needs declared) ---- */

  /* TAYORI_INBOUND_* bits: what on_inbound's verification needs from the host, so the host refuses a
   * configuration in which every webhook would be refused. Read only with on_inbound. */
  uint32_t inbound_flags;
} tayori_plugin;

/* on_inbound verifies a signature over the URL the provider called (Twilio's X-Twilio-Signature). The host
 * can give that URL (tayori_inbound_request.url) only from its configured public URL: behind a proxy or a
 * TLS terminator the request's Host header and scheme are not what the provider signed. A channel of such
 * a plugin that takes inbound calls therefore needs server.public_url. */
#define TAYORI_INBOUND_SIGNS_URL 0x1u

/* The struct_size of an ABI 1.0 descriptor: a host refuses a descriptor shorter than this. Frozen: later
 * minors append after on_inbound and leave this value alone. */
#define TAYORI_PLUGIN_V1_0_SIZE ((uint32_t)(offsetof(tayori_plugin, on_inbound) + sizeof(void*)))

typedef const tayori_plugin* (*tayori_plugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TAYORI_PLUGIN_H */
