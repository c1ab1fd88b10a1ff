/*
 * A name server and a network of its own, for t/029_mixed_addresses.pl.
 * Loaded with LD_PRELOAD, it makes getaddrinfo() resolve one host name,
 * mixed.konvox.test, to two addresses: 10.20.30.40, which
 * konvox_webhooks refuses, and 203.0.113.7, which it does not.  connect()
 * to any address of 203.0.113.0/24 fails at once with ECONNREFUSED, as a
 * host with nothing listening would answer, and nothing leaves the
 * machine.  Every other name and address goes to the real libc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define FAKE_NAME "mixed.konvox.test"

typedef int (*getaddrinfo_fn) (const char *node, const char *service,
							   const struct addrinfo *hints,
							   struct addrinfo **res);
typedef int (*connect_fn) (int fd, const struct sockaddr *addr,
						   socklen_t len);

/*
 * One allocation per address, the addrinfo first, as glibc makes them, so
 * that glibc's own freeaddrinfo() frees the list.
 */
struct fake
{
	struct addrinfo ai;
	struct sockaddr_in sin;
};

static struct addrinfo *
fake_address(const char *address, int port, int socktype, int protocol)
{
	struct fake *f = calloc(1, sizeof(struct fake));

	if (f == NULL)
		return NULL;
	f->sin.sin_family = AF_INET;
	f->sin.sin_port = htons(port);
	inet_pton(AF_INET, address, &f->sin.sin_addr);
	f->ai.ai_family = AF_INET;
	f->ai.ai_socktype = socktype ? socktype : SOCK_STREAM;
	f->ai.ai_protocol = protocol;
	f->ai.ai_addrlen = sizeof(struct sockaddr_in);
	f->ai.ai_addr = (struct sockaddr *) &f->sin;
	return &f->ai;
}

int
getaddrinfo(const char *node, const char *service,
			const struct addrinfo *hints, struct addrinfo **res)
{
	static getaddrinfo_fn real = NULL;

	if (node != NULL && strcmp(node, FAKE_NAME) == 0)
	{
		int			port = service ? atoi(service) : 0;
		int			socktype = hints ? hints->ai_socktype : 0;
		int			protocol = hints ? hints->ai_protocol : 0;
		struct addrinfo *first;

		if (hints != NULL && hints->ai_family == AF_INET6)
			return EAI_NONAME;
		first = fake_address("10.20.30.40", port, socktype, protocol);
		if (first == NULL)
			return EAI_MEMORY;
		first->ai_next = fake_address("203.0.113.7", port, socktype, protocol);
		if (first->ai_next == NULL)
		{
			free(first);
			return EAI_MEMORY;
		}
		*res = first;
		return 0;
	}
	if (real == NULL)
		real = (getaddrinfo_fn) dlsym(RTLD_NEXT, "getaddrinfo");
	return real(node, service, hints, res);
}

int
connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	static connect_fn real = NULL;

	if (addr != NULL && addr->sa_family == AF_INET &&
		(ntohl(((const struct sockaddr_in *) addr)->sin_addr.s_addr) >> 8) ==
		((203u << 16) | (0u << 8) | 113u))
	{
		errno = ECONNREFUSED;
		return -1;
	}
	if (real == NULL)
		real = (connect_fn) dlsym(RTLD_NEXT, "connect");
	return real(fd, addr, len);
}
