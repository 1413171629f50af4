#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sched.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static int spin_us;
static void rd(int fd,char*b,size_t n){size_t d=0;while(d<n){ssize_t r=recv(fd,b+d,n-d,MSG_DONTWAIT);if(r>0){d+=r;continue;}
 double t0=now(); int got=0; while(now()-t0<spin_us){r=recv(fd,b+d,n-d,MSG_DONTWAIT);if(r>0){d+=r;got=1;break;}} if(got)continue;
 struct pollfd p={fd,POLLIN,0};poll(&p,1,-1);}}
static void wr(int fd,char*b,size_t n){size_t d=0;while(d<n){ssize_t r=send(fd,b+d,n-d,MSG_DONTWAIT);if(r>0){d+=r;continue;}struct pollfd p={fd,POLLOUT,0};poll(&p,1,-1);}}
int main(int c,char**v){size_t n=atoi(v[1]);spin_us=atoi(v[2]);int it=atoi(v[3]);
 int l=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a={0};a.sin_family=AF_INET;a.sin_addr.s_addr=htonl(0x7f000001);bind(l,(void*)&a,sizeof a);listen(l,1);socklen_t sl=sizeof a;getsockname(l,(void*)&a,&sl);
 char*b=malloc(n);memset(b,1,n);
 if(fork()==0){cpu_set_t cs;CPU_ZERO(&cs);CPU_SET(1,&cs);if(getenv("PIN"))sched_setaffinity(0,sizeof cs,&cs);int s=socket(AF_INET,SOCK_STREAM,0);connect(s,(void*)&a,sizeof a);int one=1;setsockopt(s,IPPROTO_TCP,TCP_NODELAY,&one,4);for(int i=0;i<it;i++){rd(s,b,n);wr(s,b,n);}exit(0);}
 {cpu_set_t cs;CPU_ZERO(&cs);CPU_SET(0,&cs);if(getenv("PIN"))sched_setaffinity(0,sizeof cs,&cs);} int s=accept(l,0,0);int one=1;setsockopt(s,IPPROTO_TCP,TCP_NODELAY,&one,4);
 double best=1e18,sum=0;for(int i=0;i<it;i++){double t=now();wr(s,b,n);rd(s,b,n);t=now()-t;sum+=t;if(t<best)best=t;}
 printf("bytes %zu spin %d: mean rtt %.1f us min %.1f\n",n,spin_us,sum/it,best);wait(0);}
