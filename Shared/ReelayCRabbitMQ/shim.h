#ifndef REELAY_CRABBITMQ_SHIM_H
#define REELAY_CRABBITMQ_SHIM_H
/* rabbitmq-c 0.11 (Debian 12) ships top-level headers; 0.12+ moved them under rabbitmq-c/. */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#endif
#include <sys/time.h>

/* amqp_login is variadic; Swift cannot call it. PLAIN login with fixed arguments. */
static inline amqp_rpc_reply_t reelay_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                                       int channel_max, int frame_max, int heartbeat,
                                                       const char *user, const char *password) {
    return amqp_login(state, vhost, channel_max, frame_max, heartbeat, AMQP_SASL_METHOD_PLAIN, user, password);
}

/* Same as above with client properties (connection_name, capabilities) shown by the broker and merged with the defaults. */
static inline amqp_rpc_reply_t reelay_amqp_login_plain_with_properties(amqp_connection_state_t state, const char *vhost,
                                                                       int channel_max, int frame_max, int heartbeat,
                                                                       const amqp_table_t *properties,
                                                                       const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}
#endif
