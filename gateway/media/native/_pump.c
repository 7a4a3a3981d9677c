/* The steady-state RTP path of a call in C: SRTP (libsrtp2) both ways, RTP parsed and built,
 * datagrams demultiplexed and queued without a Python object per packet step.
 *
 * Three types (see gateway/media/native/__init__.py for how a call uses them):
 *   Session(profile, key, outbound)  one libsrtp2 session for RTP of one direction
 *   Receiver(session, fallback, on_ready, clock_rate)
 *       callable(data, addr) in place of aioice's StunProtocol.datagram_received: SRTP RTP is
 *       queued (on_ready() once per batch), everything else (STUN, DTLS, SRTCP, junk) goes to
 *       fallback(data, addr) unchanged; drain(permits, now) gates (before decryption),
 *       unprotects and parses the batch and keeps the receiver-report statistics.
 *   Sender(session, fd, host, port, ssrc, payload_type, mid_id, mid, abs_send_time_id)
 *       send(payload, pts, marker): RTP header (+ mid / abs-send-time), protect, sendto; the
 *       protected datagram is kept (the last ~1 s, in a fixed ring) so that resend(lost), for an
 *       RTCP NACK, puts the very same bytes on the wire again: no second protect of an index.
 *
 * Nothing here blocks: the socket is the event loop's non-blocking one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <srtp2/srtp.h>

#define MAX_PACKET 1500
#define MAX_TRAILER 64 /* SRTP_MAX_TRAILER_LEN is 16 + MKI; generous */
#define MAX_QUEUE 256
#define MAX_STREAMS 8
#define NTP_EPOCH_OFFSET 2208988800ULL
/* What a sender keeps for NACKs, and how much it may resend (see Sender_resend). */
#define HISTORY_SLOTS 64                  /* 1.28 s of 20 ms packets; a power of two divides 65536 */
#define HISTORY_BYTES 49152               /* the protected datagrams, in one ring */
#define HISTORY_AGE_NS 1000000000LL       /* older than 1 s a resend is too late to be played */
#define RESENDS_PER_PACKET 2              /* a packet asked for again and again goes out at most twice more */
#define RESEND_SHARE 2                    /* resends may add 1/RESEND_SHARE of the bytes sent… */
#define RESEND_BURST 8192                 /* …and the unused budget saved up is capped (bytes) */

/* ------------------------------------------------------------------------------------------ */
/* Session                                                                                    */

typedef struct {
    PyObject_HEAD
    srtp_t srtp;
    int outbound;
} Session;

static int srtp_ready = 0;

static int Session_init(Session *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"profile", "key", "outbound", NULL};
    int profile, outbound;
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iy*p", kwlist, &profile, &key, &outbound))
        return -1;
    srtp_policy_t policy;
    memset(&policy, 0, sizeof(policy));
    if (srtp_crypto_policy_set_from_profile_for_rtp(&policy.rtp, (srtp_profile_t)profile) != srtp_err_status_ok ||
        srtp_crypto_policy_set_from_profile_for_rtcp(&policy.rtcp, (srtp_profile_t)profile) != srtp_err_status_ok) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "unsupported SRTP profile %d", profile);
        return -1;
    }
    size_t need = srtp_profile_get_master_key_length((srtp_profile_t)profile) +
                  srtp_profile_get_master_salt_length((srtp_profile_t)profile);
    if ((size_t)key.len != need) {
        PyBuffer_Release(&key);
        PyErr_Format(PyExc_ValueError, "SRTP key and salt must be %zu bytes, not %zd", need, key.len);
        return -1;
    }
    unsigned char material[64];
    memcpy(material, key.buf, key.len);
    PyBuffer_Release(&key);
    policy.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    policy.key = material;
    policy.window_size = 1024;
    policy.allow_repeat_tx = 1;
    policy.next = NULL;
    if (self->srtp) {
        srtp_dealloc(self->srtp);
        self->srtp = NULL;
    }
    srtp_err_status_t status = srtp_create(&self->srtp, &policy);
    memset(material, 0, sizeof(material));
    if (status != srtp_err_status_ok) {
        self->srtp = NULL;
        PyErr_Format(PyExc_ValueError, "srtp_create failed (%d)", (int)status);
        return -1;
    }
    self->outbound = outbound;
    return 0;
}

static void Session_dealloc(Session *self) {
    if (self->srtp) srtp_dealloc(self->srtp);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Session_protect(Session *self, PyObject *arg) {
    Py_buffer in;
    if (!self->srtp || !self->outbound) {
        PyErr_SetString(PyExc_ValueError, "not an outbound session");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0) return NULL;
    if (in.len < 12 || in.len > MAX_PACKET) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "RTP packet too short or too long");
        return NULL;
    }
    unsigned char buf[MAX_PACKET + MAX_TRAILER];
    int len = (int)in.len;
    memcpy(buf, in.buf, len);
    PyBuffer_Release(&in);
    srtp_err_status_t status = srtp_protect(self->srtp, buf, &len);
    if (status != srtp_err_status_ok) {
        PyErr_Format(PyExc_ValueError, "srtp_protect failed (%d)", (int)status);
        return NULL;
    }
    return PyBytes_FromStringAndSize((char *)buf, len);
}

static PyObject *Session_unprotect(Session *self, PyObject *arg) {
    Py_buffer in;
    if (!self->srtp || self->outbound) {
        PyErr_SetString(PyExc_ValueError, "not an inbound session");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0) return NULL;
    if (in.len < 12 || in.len > MAX_PACKET) {
        PyBuffer_Release(&in);
        PyErr_SetString(PyExc_ValueError, "SRTP packet too short or too long");
        return NULL;
    }
    unsigned char buf[MAX_PACKET];
    int len = (int)in.len;
    memcpy(buf, in.buf, len);
    PyBuffer_Release(&in);
    srtp_err_status_t status = srtp_unprotect(self->srtp, buf, &len);
    if (status != srtp_err_status_ok) {
        PyErr_Format(PyExc_ValueError, "srtp_unprotect failed (%d)", (int)status);
        return NULL;
    }
    return PyBytes_FromStringAndSize((char *)buf, len);
}

static PyMethodDef Session_methods[] = {
    {"protect", (PyCFunction)Session_protect, METH_O, "RTP → SRTP (outbound session)."},
    {"unprotect", (PyCFunction)Session_unprotect, METH_O, "SRTP → RTP (inbound session); ValueError if it fails."},
    {NULL}};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media.native._pump.Session",
    .tp_basicsize = sizeof(Session),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Session_init,
    .tp_dealloc = (destructor)Session_dealloc,
    .tp_methods = Session_methods,
    .tp_doc = "One libsrtp2 session for the RTP of one direction.",
};

/* ------------------------------------------------------------------------------------------ */
/* RTP parsing                                                                                */

typedef struct {
    uint32_t ssrc, timestamp;
    uint16_t seq;
    uint8_t pt, marker;
    int payload_offset, payload_len;
} RtpHeader;

/* 0 if ``buf`` is a well-formed RTP packet (RFC 3550 §5.1, padding and extensions honoured). */
static int parse_rtp_header(const unsigned char *buf, int len, RtpHeader *h) {
    if (len < 12 || (buf[0] >> 6) != 2) return -1;
    int cc = buf[0] & 0x0f, offset = 12 + 4 * cc;
    if (offset > len) return -1;
    if (buf[0] & 0x10) {
        if (offset + 4 > len) return -1;
        int words = (buf[offset + 2] << 8) | buf[offset + 3];
        offset += 4 + 4 * words;
        if (offset > len) return -1;
    }
    int end = len;
    if (buf[0] & 0x20) {
        int padding = buf[len - 1];
        if (padding == 0 || offset + padding > len) return -1;
        end -= padding;
    }
    h->marker = buf[1] >> 7;
    h->pt = buf[1] & 0x7f;
    h->seq = (uint16_t)((buf[2] << 8) | buf[3]);
    h->timestamp = ((uint32_t)buf[4] << 24) | ((uint32_t)buf[5] << 16) | ((uint32_t)buf[6] << 8) | buf[7];
    h->ssrc = ((uint32_t)buf[8] << 24) | ((uint32_t)buf[9] << 16) | ((uint32_t)buf[10] << 8) | buf[11];
    h->payload_offset = offset;
    h->payload_len = end - offset;
    return 0;
}

static PyObject *header_tuple(const unsigned char *buf, const RtpHeader *h) {
    return Py_BuildValue("(kiIkiy#)", (unsigned long)h->ssrc, (int)h->pt, (unsigned int)h->seq,
                         (unsigned long)h->timestamp, (int)h->marker, buf + h->payload_offset,
                         (Py_ssize_t)h->payload_len);
}

static PyObject *parse_rtp(PyObject *module, PyObject *arg) {
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0) return NULL;
    RtpHeader h;
    PyObject *result;
    if (in.len > MAX_PACKET || parse_rtp_header(in.buf, (int)in.len, &h) < 0) {
        Py_INCREF(Py_None);
        result = Py_None;
    } else {
        result = header_tuple(in.buf, &h);
    }
    PyBuffer_Release(&in);
    return result;
}

/* aiortc's rule (rtp.is_rtcp): the second byte is an RTCP packet type 192–208. */
static inline int is_srtp(const unsigned char *b, Py_ssize_t len) {
    return len >= 12 && b[0] > 127 && b[0] < 192 && !(b[1] >= 192 && b[1] <= 208);
}

/* ------------------------------------------------------------------------------------------ */
/* Receiver                                                                                   */

typedef struct {  /* aiortc's StreamStatistics, for one SSRC */
    uint32_t ssrc;
    int used, has_max, has_last;
    uint16_t base_seq, max_seq;
    long long cycles, packets_received, jitter_q4, last_arrival;
    uint32_t last_timestamp;
} Stream;

typedef struct {
    PyObject_HEAD
    Session *session;
    PyObject *fallback, *on_ready;
    PyObject *queue[MAX_QUEUE];
    int queued;
    int clock_rate;
    Stream streams[MAX_STREAMS];
    int next_stream;
    unsigned long long received, refused, undecryptable, malformed, overflow, handed_back;
} Receiver;

static int Receiver_init(Receiver *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"session", "fallback", "on_ready", "clock_rate", NULL};
    PyObject *session, *fallback, *on_ready;
    int clock_rate = 48000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO|i", kwlist, &SessionType, &session, &fallback, &on_ready,
                                     &clock_rate))
        return -1;
    if (((Session *)session)->outbound) {
        PyErr_SetString(PyExc_ValueError, "the receiver needs an inbound session");
        return -1;
    }
    Py_INCREF(session);
    Py_INCREF(fallback);
    Py_INCREF(on_ready);
    Py_XSETREF(self->session, (Session *)session);
    Py_XSETREF(self->fallback, fallback);
    Py_XSETREF(self->on_ready, on_ready);
    self->clock_rate = clock_rate;
    return 0;
}

static void Receiver_clear_queue(Receiver *self) {
    for (int i = 0; i < self->queued; i++) Py_CLEAR(self->queue[i]);
    self->queued = 0;
}

static int Receiver_traverse(Receiver *self, visitproc visit, void *arg) {
    Py_VISIT(self->session);
    Py_VISIT(self->fallback);
    Py_VISIT(self->on_ready);
    return 0;
}

static int Receiver_clear(Receiver *self) {
    Receiver_clear_queue(self);
    Py_CLEAR(self->session);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->on_ready);
    return 0;
}

static void Receiver_dealloc(Receiver *self) {
    PyObject_GC_UnTrack(self);
    Receiver_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The datagram callback: queue SRTP, hand the rest back, tell the owner once per batch. */
static PyObject *Receiver_call(Receiver *self, PyObject *args, PyObject *kwds) {
    PyObject *data, *addr;
    if (!PyArg_ParseTuple(args, "OO", &data, &addr)) return NULL;
    if (PyBytes_Check(data) && is_srtp((unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) &&
        PyBytes_GET_SIZE(data) <= MAX_PACKET && self->session) {
        if (self->queued == MAX_QUEUE) {
            self->overflow++;
            Py_RETURN_NONE;
        }
        Py_INCREF(data);
        self->queue[self->queued++] = data;
        if (self->queued == 1) {
            PyObject *r = PyObject_CallNoArgs(self->on_ready);
            if (!r) return NULL;
            Py_DECREF(r);
        }
        Py_RETURN_NONE;
    }
    self->handed_back++;
    if (!self->fallback) Py_RETURN_NONE;
    return PyObject_CallFunctionObjArgs(self->fallback, data, addr, NULL);
}

static Stream *stream_for(Receiver *self, uint32_t ssrc) {
    for (int i = 0; i < MAX_STREAMS; i++)
        if (self->streams[i].used && self->streams[i].ssrc == ssrc) return &self->streams[i];
    Stream *s = &self->streams[self->next_stream];
    self->next_stream = (self->next_stream + 1) % MAX_STREAMS;
    memset(s, 0, sizeof(*s));
    s->used = 1;
    s->ssrc = ssrc;
    return s;
}

static inline int uint16_gt(uint16_t a, uint16_t b) {
    return (a > b && a - b < 0x8000) || (a < b && b - a > 0x8000);
}

/* StreamStatistics.add, line for line (aiortc 1.16). */
static void stream_add(Stream *s, const RtpHeader *h, long long arrival) {
    int in_order = !s->has_max || uint16_gt(h->seq, s->max_seq);
    s->packets_received++;
    if (s->packets_received == 1) s->base_seq = h->seq;
    if (in_order) {
        if (s->has_max && h->seq < s->max_seq) s->cycles += 1 << 16;
        s->max_seq = h->seq;
        s->has_max = 1;
        if (s->has_last && h->timestamp != s->last_timestamp && s->packets_received > 1) {
            long long diff = (arrival - s->last_arrival) - ((long long)h->timestamp - (long long)s->last_timestamp);
            if (diff < 0) diff = -diff;
            s->jitter_q4 += diff - ((s->jitter_q4 + 8) >> 4);
        }
        s->last_arrival = arrival;
        s->last_timestamp = h->timestamp;
        s->has_last = 1;
    }
}

static PyObject *Receiver_drain(Receiver *self, PyObject *args) {
    PyObject *permits, *now;
    if (!PyArg_ParseTuple(args, "OO", &permits, &now)) return NULL;
    int count = self->queued;
    PyObject *taken[MAX_QUEUE];
    memcpy(taken, self->queue, sizeof(PyObject *) * count);
    self->queued = 0;  /* a callback below may queue more: they go in the next batch */
    PyObject *out = PyList_New(0);
    if (!out) goto fail;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long arrival = (long long)(((double)ts.tv_sec + ts.tv_nsec / 1e9) * self->clock_rate);
    unsigned char buf[MAX_PACKET];
    for (int i = 0; i < count; i++) {
        PyObject *data = taken[i];
        const unsigned char *raw = (unsigned char *)PyBytes_AS_STRING(data);
        int len = (int)PyBytes_GET_SIZE(data);
        self->received++;
        if (permits != Py_None) {
            uint32_t ssrc = ((uint32_t)raw[8] << 24) | ((uint32_t)raw[9] << 16) | ((uint32_t)raw[10] << 8) | raw[11];
            PyObject *ssrc_obj = PyLong_FromUnsignedLong(ssrc);
            if (!ssrc_obj) goto fail;
            PyObject *r = PyObject_CallFunctionObjArgs(permits, ssrc_obj, now, NULL);
            Py_DECREF(ssrc_obj);
            if (!r) goto fail;
            int ok = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (ok < 0) goto fail;
            if (!ok) {
                self->refused++;
                continue;
            }
        }
        memcpy(buf, raw, len);
        if (!self->session || srtp_unprotect(self->session->srtp, buf, &len) != srtp_err_status_ok) {
            self->undecryptable++;
            continue;
        }
        RtpHeader h;
        if (parse_rtp_header(buf, len, &h) < 0) {
            self->malformed++;
            continue;
        }
        stream_add(stream_for(self, h.ssrc), &h, arrival);
        PyObject *item = header_tuple(buf, &h);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    for (int i = 0; i < count; i++) Py_DECREF(taken[i]);
    return out;
fail:
    for (int i = 0; i < count; i++) Py_DECREF(taken[i]);
    Py_XDECREF(out);
    return NULL;
}

static PyObject *Receiver_statistics(Receiver *self, PyObject *arg) {
    unsigned long ssrc = PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred()) return NULL;
    for (int i = 0; i < MAX_STREAMS; i++) {
        Stream *s = &self->streams[i];
        if (s->used && s->ssrc == ssrc)
            return Py_BuildValue("{s:I,s:I,s:L,s:L,s:L,s:L,s:k}", "base_seq", (unsigned)s->base_seq, "max_seq",
                                 (unsigned)s->max_seq, "cycles", s->cycles, "packets_received", s->packets_received,
                                 "_jitter_q4", s->jitter_q4, "_last_arrival", s->last_arrival, "_last_timestamp",
                                 (unsigned long)s->last_timestamp);
    }
    Py_RETURN_NONE;
}

static PyObject *Receiver_close(Receiver *self, PyObject *unused) {
    Receiver_clear_queue(self);
    Py_CLEAR(self->on_ready);
    self->on_ready = Py_None;
    Py_INCREF(Py_None);
    Py_CLEAR(self->session);
    Py_RETURN_NONE;
}

static PyObject *Receiver_get_queued(Receiver *self, void *closure) { return PyLong_FromLong(self->queued); }

static PyObject *Receiver_get_counts(Receiver *self, void *closure) {
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K}", "received", self->received, "refused", self->refused,
                         "undecryptable", self->undecryptable, "malformed", self->malformed, "overflow",
                         self->overflow, "handed_back", self->handed_back);
}

static PyMethodDef Receiver_methods[] = {
    {"drain", (PyCFunction)Receiver_drain, METH_VARARGS,
     "drain(permits, now) → [(ssrc, pt, seq, timestamp, marker, payload)]: the queued batch, gated by "
     "permits(ssrc, now) (None: all) before decryption, unprotected and parsed."},
    {"statistics", (PyCFunction)Receiver_statistics, METH_O, "StreamStatistics fields of one SSRC, or None."},
    {"close", (PyCFunction)Receiver_close, METH_NOARGS, "Drop the queue and the session; later RTP is discarded."},
    {NULL}};

static PyGetSetDef Receiver_getset[] = {
    {"queued", (getter)Receiver_get_queued, NULL, "datagrams waiting for drain()", NULL},
    {"counts", (getter)Receiver_get_counts, NULL, "what happened to the datagrams so far", NULL},
    {NULL}};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media.native._pump.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Receiver_init,
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_traverse = (traverseproc)Receiver_traverse,
    .tp_clear = (inquiry)Receiver_clear,
    .tp_call = (ternaryfunc)Receiver_call,
    .tp_methods = Receiver_methods,
    .tp_getset = Receiver_getset,
    .tp_doc = "A call's inbound RTP: datagram demux, batch SRTP unprotect, RTP parse, RR statistics.",
};

/* ------------------------------------------------------------------------------------------ */
/* Sender                                                                                     */

typedef struct {
    PyObject_HEAD
    Session *session;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint32_t ssrc, timestamp_origin, last_timestamp;
    uint16_t seq;
    uint8_t pt;
    int mid_id, abs_id;
    char mid[16];
    int mid_len;
    unsigned long long packets, octets, dropped;
    /* NACK history: slot seq % HISTORY_SLOTS says where in the ring its datagram starts */
    struct {
        uint64_t start;
        long long sent_ns, resent_ns;
        uint16_t seq, len;
        uint8_t used, resends;
    } kept[HISTORY_SLOTS];
    uint64_t written;  /* ring bytes ever written (positions are written % HISTORY_BYTES) */
    long long budget;  /* bytes a resend may still use, times RESEND_SHARE */
    unsigned long long resent, resent_bytes, resend_unknown, resend_repeated, resend_over_budget;
    unsigned char history[HISTORY_BYTES];
} Sender;

static int set_destination(Sender *self, const char *host, int port);

static int Sender_init(Sender *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"session", "fd", "host", "port", "ssrc", "payload_type", "sequence", "timestamp_origin",
                             "mid_id", "mid", "abs_send_time_id", NULL};
    PyObject *session;
    int fd, port, pt, mid_id = 0, abs_id = 0;
    const char *host, *mid = "";
    unsigned long ssrc, seq, origin;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!isikikk|isi", kwlist, &SessionType, &session, &fd, &host, &port,
                                     &ssrc, &pt, &seq, &origin, &mid_id, &mid, &abs_id))
        return -1;
    if (!((Session *)session)->outbound) {
        PyErr_SetString(PyExc_ValueError, "the sender needs an outbound session");
        return -1;
    }
    if (set_destination(self, host, port) < 0) return -1;
    size_t mid_len = strlen(mid);
    if (mid_len > 15 || (mid_id && mid_len == 0) || mid_id < 0 || mid_id > 14 || abs_id < 0 || abs_id > 14) {
        PyErr_SetString(PyExc_ValueError, "header extension ids must be 1–14 and the mid 1–15 bytes");
        return -1;
    }
    Py_INCREF(session);
    Py_XSETREF(self->session, (Session *)session);
    self->fd = fd;
    self->ssrc = (uint32_t)ssrc;
    self->pt = (uint8_t)(pt & 0x7f);
    self->seq = (uint16_t)seq;
    self->timestamp_origin = (uint32_t)origin;
    self->mid_id = mid_id;
    self->abs_id = abs_id;
    memcpy(self->mid, mid, mid_len);
    self->mid_len = (int)mid_len;
    memset(self->kept, 0, sizeof(self->kept));
    self->written = 0;
    self->budget = 0;
    return 0;
}

/* Where the datagram goes: a numeric host and port (the ICE pair moved), on socket ``fd``. */
static int set_destination(Sender *self, const char *host, int port) {
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof(addr));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        self->addr_len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        self->addr_len = sizeof(*v6);
    } else {
        PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
        return -1;
    }
    self->addr = addr;
    return 0;
}

static void Sender_dealloc(Sender *self) {
    Py_XDECREF(self->session);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static long long monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Keep a protected datagram for resend(): contiguous in the ring (a tail too short is skipped). */
static void keep(Sender *self, uint16_t seq, const unsigned char *buf, int len) {
    uint64_t at = self->written;
    if (at % HISTORY_BYTES + (uint64_t)len > HISTORY_BYTES) at += HISTORY_BYTES - at % HISTORY_BYTES;
    memcpy(self->history + at % HISTORY_BYTES, buf, len);
    self->written = at + len;
    int i = seq % HISTORY_SLOTS;
    self->kept[i].start = at;
    self->kept[i].sent_ns = monotonic_ns();
    self->kept[i].seq = seq;
    self->kept[i].len = (uint16_t)len;
    self->kept[i].used = 1;
    self->kept[i].resends = 0;
    self->budget += len;  /* in units of 1/RESEND_SHARE byte */
    if (self->budget > (long long)RESEND_BURST * RESEND_SHARE) self->budget = (long long)RESEND_BURST * RESEND_SHARE;
}

static uint64_t ntp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)(ts.tv_sec + NTP_EPOCH_OFFSET) << 32) | (uint64_t)(((double)ts.tv_nsec / 1e9) * 4294967296.0);
}

/* The RTP packet aiortc's sender would make (RtpPacket.serialize with one-byte extensions). */
static int build_rtp(Sender *self, unsigned char *buf, const unsigned char *payload, int payload_len, uint32_t pts,
                     int marker) {
    uint32_t timestamp = self->timestamp_origin + pts;
    int has_ext = self->mid_id || self->abs_id;
    buf[0] = 0x80 | (has_ext ? 0x10 : 0);
    buf[1] = (uint8_t)((marker ? 0x80 : 0) | self->pt);
    buf[2] = self->seq >> 8;
    buf[3] = self->seq & 0xff;
    buf[4] = timestamp >> 24;
    buf[5] = timestamp >> 16;
    buf[6] = timestamp >> 8;
    buf[7] = timestamp;
    buf[8] = self->ssrc >> 24;
    buf[9] = self->ssrc >> 16;
    buf[10] = self->ssrc >> 8;
    buf[11] = self->ssrc;
    int offset = 12;
    if (has_ext) {
        unsigned char *ext = buf + 16;
        int n = 0;
        if (self->abs_id) {
            uint32_t abs = (uint32_t)((ntp_now() >> 14) & 0x00FFFFFF);
            ext[n++] = (uint8_t)((self->abs_id << 4) | 2);
            ext[n++] = abs >> 16;
            ext[n++] = abs >> 8;
            ext[n++] = abs;
        }
        if (self->mid_id) {
            ext[n++] = (uint8_t)((self->mid_id << 4) | (self->mid_len - 1));
            memcpy(ext + n, self->mid, self->mid_len);
            n += self->mid_len;
        }
        while (n % 4) ext[n++] = 0;
        buf[12] = 0xBE;
        buf[13] = 0xDE;
        buf[14] = (n / 4) >> 8;
        buf[15] = (n / 4) & 0xff;
        offset = 16 + n;
    }
    memcpy(buf + offset, payload, payload_len);
    self->last_timestamp = timestamp;
    return offset + payload_len;
}

static PyObject *Sender_send(Sender *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "send(payload, pts, marker)");
        return NULL;
    }
    Py_buffer payload;
    if (PyObject_GetBuffer(args[0], &payload, PyBUF_SIMPLE) < 0) return NULL;
    unsigned long pts = PyLong_AsUnsignedLongMask(args[1]);
    int marker = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred() || marker < 0) {
        PyBuffer_Release(&payload);
        return NULL;
    }
    if (payload.len > MAX_PACKET - 64) {
        PyBuffer_Release(&payload);
        PyErr_SetString(PyExc_ValueError, "payload too long");
        return NULL;
    }
    if (!self->session) {
        PyBuffer_Release(&payload);
        PyErr_SetString(PyExc_ValueError, "sender closed");
        return NULL;
    }
    unsigned char buf[MAX_PACKET + MAX_TRAILER];
    int len = build_rtp(self, buf, payload.buf, (int)payload.len, (uint32_t)pts, marker);
    Py_ssize_t payload_len = payload.len;
    PyBuffer_Release(&payload);
    uint16_t seq = self->seq;
    srtp_err_status_t status = srtp_protect(self->session->srtp, buf, &len);
    self->seq++;
    if (status != srtp_err_status_ok) {
        self->dropped++;
        return PyLong_FromLong(0);
    }
    keep(self, seq, buf, len);  /* even if the socket refuses it below: a NACK may still fetch it */
    ssize_t sent = sendto(self->fd, buf, len, 0, (struct sockaddr *)&self->addr, self->addr_len);
    if (sent < 0) {  /* EAGAIN, ENOBUFS, a closed socket: the packet is lost, as on the wire */
        self->dropped++;
        return PyLong_FromLong(0);
    }
    self->packets++;
    self->octets += payload_len;
    return PyLong_FromLong((long)sent);
}

/* resend(lost, spacing) for one RTCP NACK: each sequence number still kept (sent within the last
 * second, not overwritten) goes out again as the same protected datagram, at most
 * RESENDS_PER_PACKET times and not again within ``spacing`` seconds (a round trip: the receiver
 * asks again before the first resend could have reached it), and all resends together within a
 * budget of 1/RESEND_SHARE of the bytes sent (saved up to RESEND_BURST): a peer that NACKs
 * everything adds at most half the stream, not a multiple. */
static PyObject *Sender_resend(Sender *self, PyObject *args) {
    PyObject *lost;
    double spacing = 0.0;
    if (!PyArg_ParseTuple(args, "O|d", &lost, &spacing)) return NULL;
    PyObject *iterator = PyObject_GetIter(lost);
    if (!iterator) return NULL;
    long long now = monotonic_ns(), spacing_ns = spacing > 0 ? (long long)(spacing * 1e9) : 0;
    long count = 0;
    PyObject *item;
    while ((item = PyIter_Next(iterator))) {
        unsigned long value = PyLong_AsUnsignedLongMask(item);  /* aiortc's parse may give 65536+ */
        Py_DECREF(item);
        if (value == (unsigned long)-1 && PyErr_Occurred()) break;
        uint16_t seq = (uint16_t)value;
        int i = seq % HISTORY_SLOTS;
        if (!self->session || !self->kept[i].used || self->kept[i].seq != seq ||
            self->written - self->kept[i].start > HISTORY_BYTES || now - self->kept[i].sent_ns > HISTORY_AGE_NS) {
            self->resend_unknown++;
            continue;
        }
        if (self->kept[i].resends >= RESENDS_PER_PACKET ||
            (self->kept[i].resends && now - self->kept[i].resent_ns < spacing_ns)) {
            self->resend_repeated++;
            continue;
        }
        int len = self->kept[i].len;
        if (self->budget < (long long)len * RESEND_SHARE) {
            self->resend_over_budget++;
            continue;
        }
        self->kept[i].resends++;
        self->kept[i].resent_ns = now;
        ssize_t sent = sendto(self->fd, self->history + self->kept[i].start % HISTORY_BYTES, len, 0,
                              (struct sockaddr *)&self->addr, self->addr_len);
        if (sent < 0) {
            self->dropped++;
            continue;
        }
        self->budget -= (long long)len * RESEND_SHARE;
        self->resent++;
        self->resent_bytes += (unsigned long long)sent;
        count++;
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromLong(count);
}

static PyObject *Sender_retarget(Sender *self, PyObject *args) {
    int fd, port;
    const char *host;
    if (!PyArg_ParseTuple(args, "isi", &fd, &host, &port)) return NULL;
    if (set_destination(self, host, port) < 0) return NULL;
    self->fd = fd;
    Py_RETURN_NONE;
}

static PyObject *Sender_close(Sender *self, PyObject *unused) {
    Py_CLEAR(self->session);
    Py_RETURN_NONE;
}

static PyMethodDef Sender_methods[] = {
    {"send", (PyCFunction)(void (*)(void))Sender_send, METH_FASTCALL,
     "send(payload, pts, marker) → bytes put on the wire (0: dropped)."},
    {"resend", (PyCFunction)Sender_resend, METH_VARARGS,
     "resend(lost sequence numbers, spacing=0.0 s) → how many kept packets went out again (bounded; see the "
     "counters)."},
    {"retarget", (PyCFunction)Sender_retarget, METH_VARARGS,
     "retarget(fd, host, port): send from another socket to another address, numbering and history kept."},
    {"close", (PyCFunction)Sender_close, METH_NOARGS, "Forget the session: later sends fail."},
    {NULL}};

static PyMemberDef Sender_members[] = {
    {"packets", T_ULONGLONG, offsetof(Sender, packets), READONLY, "packets sent"},
    {"octets", T_ULONGLONG, offsetof(Sender, octets), READONLY, "payload octets sent (RTCP SR)"},
    {"dropped", T_ULONGLONG, offsetof(Sender, dropped), READONLY, "packets the socket refused"},
    {"last_timestamp", T_UINT, offsetof(Sender, last_timestamp), READONLY, "RTP timestamp of the last packet"},
    {"sequence", T_USHORT, offsetof(Sender, seq), READONLY, "the next packet's sequence number"},
    {"ssrc", T_UINT, offsetof(Sender, ssrc), READONLY, NULL},
    {"resent", T_ULONGLONG, offsetof(Sender, resent), READONLY, "packets resent for NACKs (not in packets)"},
    {"resent_bytes", T_ULONGLONG, offsetof(Sender, resent_bytes), READONLY, "datagram bytes resent"},
    {"resend_unknown", T_ULONGLONG, offsetof(Sender, resend_unknown), READONLY,
     "NACKed packets no longer (or never) kept"},
    {"resend_repeated", T_ULONGLONG, offsetof(Sender, resend_repeated), READONLY,
     "NACKed packets already resent RESENDS_PER_PACKET times, or less than the spacing ago"},
    {"resend_over_budget", T_ULONGLONG, offsetof(Sender, resend_over_budget), READONLY,
     "NACKed packets refused: the resend budget was spent"},
    {NULL}};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "gateway.media.native._pump.Sender",
    .tp_basicsize = sizeof(Sender),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Sender_init,
    .tp_dealloc = (destructor)Sender_dealloc,
    .tp_methods = Sender_methods,
    .tp_members = Sender_members,
    .tp_doc = "A call's outbound RTP: header, SRTP protect and sendto in one call per packet.",
};

/* ------------------------------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    {"parse_rtp", parse_rtp, METH_O, "(ssrc, pt, seq, timestamp, marker, payload) of an RTP packet, or None."},
    {NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pump", "Native RTP/SRTP pump.", -1, module_methods};

PyMODINIT_FUNC PyInit__pump(void) {
    if (!srtp_ready) {
        if (srtp_init() != srtp_err_status_ok) {
            PyErr_SetString(PyExc_ImportError, "srtp_init failed");
            return NULL;
        }
        srtp_ready = 1;
    }
    if (PyType_Ready(&SessionType) < 0 || PyType_Ready(&ReceiverType) < 0 || PyType_Ready(&SenderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&SessionType);
    Py_INCREF(&ReceiverType);
    Py_INCREF(&SenderType);
    if (PyModule_AddIntConstant(m, "HISTORY_SLOTS", HISTORY_SLOTS) < 0 ||
        PyModule_AddIntConstant(m, "HISTORY_BYTES", HISTORY_BYTES) < 0 ||
        PyModule_AddIntConstant(m, "HISTORY_AGE_MS", (long)(HISTORY_AGE_NS / 1000000)) < 0 ||
        PyModule_AddIntConstant(m, "RESENDS_PER_PACKET", RESENDS_PER_PACKET) < 0 ||
        PyModule_AddIntConstant(m, "RESEND_SHARE", RESEND_SHARE) < 0 ||
        PyModule_AddIntConstant(m, "RESEND_BURST", RESEND_BURST) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "Session", (PyObject *)&SessionType) < 0 ||
        PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0 ||
        PyModule_AddObject(m, "Sender", (PyObject *)&SenderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
